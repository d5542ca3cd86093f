//! `coherent`: the sidecar binary.

mod admin;
mod config;
mod telemetry;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "coherent",
    version,
    about = "Cache consistency sidecar for MySQL and Redis"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the embedded Redis-compatible engine (and, when configured, the pipeline).
    Serve {
        /// Config file (TOML).
        #[arg(long, short, env = "COHERENT_CONFIG")]
        config: Option<PathBuf>,
        /// Address the engine listens on (overrides [engine] listen).
        #[arg(long)]
        listen: Option<String>,
        /// Password clients must AUTH with (overrides [engine] requirepass).
        #[arg(long)]
        requirepass: Option<String>,
        /// Address of the admin HTTP server (overrides [admin] listen; "" turns it off).
        #[arg(long)]
        admin_listen: Option<String>,
    },
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // A user's mistake (bad config, port in use) gets its message, not a backtrace.
            eprintln!("coherent: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("COHERENT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve {
            config,
            listen,
            requirepass,
            admin_listen,
        } => {
            let mut cfg = config::Config::load(config.as_deref())?;
            if let Some(l) = listen {
                cfg.engine.listen = l;
            }
            if let Some(p) = requirepass {
                cfg.engine.requirepass = Some(p);
            }
            if let Some(a) = admin_listen {
                cfg.admin.listen = a;
            }
            serve(cfg)
        }
    }
}

fn serve(cfg: config::Config) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let server = engine::Server::bind(cfg.engine.clone())
            .await
            .with_context(|| format!("cannot listen on {}", cfg.engine.listen))?;
        let addr = server.local_addr()?;
        let engine = server.engine();
        let telemetry = std::sync::Arc::new(telemetry::Telemetry::new()?);
        telemetry.observe_engine(engine.clone());
        if !cfg.admin.listen.is_empty() {
            let state = admin::AdminState {
                engine: engine.clone(),
                engine_addr: addr.to_string(),
                telemetry: telemetry.clone(),
                started: std::time::Instant::now(),
            };
            let e = engine.clone();
            let admin_addr = admin::serve(&cfg.admin.listen, state, async move {
                e.shutdown_requested().await
            })
            .await?;
            tracing::info!(%admin_addr, "admin HTTP ready");
            println!("coherent: admin listening on {admin_addr}");
        }
        tracing::info!(%addr, "engine ready to accept connections");
        // A line on stdout that scripts and tests can wait for.
        println!("coherent: engine listening on {addr}");
        let stop = engine.clone();
        server
            .run(async move {
                engine::server::os_signal().await;
                stop.shared().trigger_shutdown();
            })
            .await?;
        tracing::info!("shut down");
        Ok(())
    })
}
