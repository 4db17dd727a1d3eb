//! `cargo bench -p camring-bench --bench quic`: [`camring_bench::adapters::quic`]; without
//! `--bench` (as under `cargo test --all-targets`) its smoke run.

fn main() -> anyhow::Result<()> {
    camring_bench::adapters::quic::main()
}
