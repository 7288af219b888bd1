//! Runs the embedded control plane until Ctrl-C:
//! `cargo run --example devcluster -- --kubeconfig /tmp/kc --listen 127.0.0.1:0`

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
struct Args {
    /// Where to write the kubeconfig.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Listen address (default 127.0.0.1 with a free port).
    #[arg(long)]
    listen: Option<SocketAddr>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    ingress_failover::devcluster::serve_command(&args.kubeconfig, args.listen).await?;
    Ok(())
}
