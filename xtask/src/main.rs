//! `cargo xtask <command>`: project automation, one module per subcommand.

mod bench;

use anyhow::{Result, bail};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  bench [--quick] [--json FILE] [--threads N] [SUITE...]
        throughput tables, ours beside the memory floor and the PyTorch baselines
        (suites: focal, anchors, fpn; torch rows need `$FOCAL_PYTHON` or python3 with torch)";

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
        other => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}
