//! Property: for any small geometry, the im2col + GEMM convolution equals the float64 direct
//! convolution.

mod common;

use common::{FORWARD, assert_close, random, widen};
use fpn_net::reference::{self, Array4};
use fpn_net::{Conv2d, Conv2dConfig, Tensor4};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn conv2d_equals_direct_convolution(
        cin in 1usize..4, cout in 1usize..4, kh in 1usize..4, kw in 1usize..4,
        sh in 1usize..3, sw in 1usize..3, ph in 0usize..3, pw in 0usize..3,
        dh in 1usize..3, dw in 1usize..3, h in 1usize..9, w in 1usize..9, n in 1usize..3,
        bias in any::<bool>(), row_tiles in any::<bool>(),
    ) {
        let cfg = Conv2dConfig {
            in_channels: cin, out_channels: cout, kernel: [kh, kw], stride: [sh, sw],
            padding: [ph, pw], dilation: [dh, dw], bias,
        };
        let mut conv = Conv2d::new(cfg).unwrap();
        if row_tiles {
            conv.set_col_tile_bytes(1);
        }
        let dims = [n, cin, h, w];
        let x = Tensor4::from_vec(random("prop.x", n * cin * h * w, -1.0, 1.0), dims).unwrap();
        conv.weight.value = random("prop.w", conv.weight.numel(), -1.0, 1.0);
        if let Some(b) = &mut conv.bias {
            b.value = random("prop.b", cout, -1.0, 1.0);
        }
        let mut y = Tensor4::default();
        let fits = h + 2 * ph > dh * (kh - 1) && w + 2 * pw > dw * (kw - 1);
        let result = conv.forward(&x, &mut y);
        prop_assert_eq!(result.is_ok(), fits);
        if fits {
            let bias = conv.bias.as_ref().map(|b| widen(&b.value));
            let want = reference::conv2d(
                &Array4::from_f32(x.as_slice(), dims), &widen(&conv.weight.value), bias.as_deref(), &cfg,
            );
            prop_assert_eq!(y.dims(), want.dims);
            assert_close("prop conv", y.as_slice(), &want.data, FORWARD);
        }
    }
}
