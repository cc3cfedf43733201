//! The committed PTX must be built from the committed kernel sources. This test needs no CUDA
//! toolchain: it compares the source hashes recorded in `ptx/manifest.json` with the files in
//! `kernels/`, and the embedded module list with the manifest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const STALE: &str = "run `cargo xtask build-kernels` and commit";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// FNV-1a, 64 bit, as `xtask/src/build_kernels.rs` writes it.
fn fnv1a64(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("fnv1a64:{h:016x}")
}

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ptx/manifest.json"))
        .unwrap_or_else(|e| panic!("ptx/manifest.json unreadable ({e}): {STALE}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("ptx/manifest.json is not JSON ({e}): {STALE}"))
}

#[test]
fn manifest_hashes_match_kernel_sources() {
    let root = repo_root();
    let mut on_disk = BTreeMap::new();
    for entry in std::fs::read_dir(root.join("kernels")).expect("kernels/ exists") {
        let path = entry.expect("readable entry").path();
        if matches!(path.extension().and_then(|e| e.to_str()), Some("cu" | "cuh")) {
            let name = format!("kernels/{}", path.file_name().unwrap().to_string_lossy());
            on_disk.insert(name, fnv1a64(&std::fs::read(&path).expect("readable source")));
        }
    }
    let recorded: BTreeMap<String, String> = manifest()["sources"]
        .as_object()
        .expect("manifest has sources")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    for (name, hash) in &on_disk {
        match recorded.get(name) {
            None => panic!("{name} is not in ptx/manifest.json: {STALE}"),
            Some(r) if r != hash => {
                panic!("{name} changed since its PTX was built ({r} recorded, {hash} now): {STALE}")
            }
            Some(_) => {}
        }
    }
    for name in recorded.keys() {
        assert!(on_disk.contains_key(name), "{name} is in the manifest but gone: {STALE}");
    }
}

#[test]
fn embedded_modules_match_manifest() {
    let manifest = manifest();
    let modules = manifest["modules"].as_array().expect("manifest has modules");
    assert_eq!(modules.len(), focal_cuda::ptx::MODULES.len(), "{STALE}");
    for (recorded, embedded) in modules.iter().zip(focal_cuda::ptx::MODULES) {
        assert_eq!(recorded["name"].as_str(), Some(embedded.name), "{STALE}");
        assert_eq!(
            recorded["ptx_hash"].as_str(),
            Some(fnv1a64(embedded.ptx.as_bytes()).as_str()),
            "embedded PTX of {} differs from the manifest: {STALE}",
            embedded.name
        );
        let kernels: Vec<&str> =
            recorded["kernels"].as_array().expect("kernels").iter().filter_map(|k| k["name"].as_str()).collect();
        let mut embedded_kernels = embedded.kernels.to_vec();
        embedded_kernels.sort_unstable();
        assert_eq!(kernels, embedded_kernels, "{STALE}");
    }
}

#[test]
fn manifest_records_zero_spills() {
    for module in manifest()["modules"].as_array().expect("modules") {
        for kernel in module["kernels"].as_array().expect("kernels") {
            for (arch, r) in kernel["resources"].as_object().expect("resources") {
                assert_eq!(
                    (r["spill_stores"].as_u64(), r["spill_loads"].as_u64()),
                    (Some(0), Some(0)),
                    "{} spills on {arch}",
                    kernel["name"]
                );
            }
        }
    }
}
