//! `cargo xtask <command>`: project automation, one module per subcommand.

mod bench;

use anyhow::{Result, bail};

mod build_kernels;
mod check_kernels;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  bench [--quick] [--json FILE] [--threads N] [SUITE...]
        throughput tables, ours beside the memory floor and the PyTorch baselines
        (suites: focal, anchors, fpn, gpu; torch rows need `$FOCAL_PYTHON` or python3 with torch)
  build-kernels [--check]
        kernels/*.cu -> PTX + manifest for focal-cuda (pinned nvcc 13.0)
  check-kernels [--quick] [--seed N]
        every kernel on the GPU vs focal-core's float64 reference";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        println!("{USAGE}");
        return Ok(());
    };
    match command.as_str() {
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        "bench" => bench::run(rest),
        "build-kernels" => build_kernels::main(rest),
        "check-kernels" => check_kernels::main(rest),
        other => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}
