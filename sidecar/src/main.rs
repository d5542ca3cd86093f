//! `coherent`: the sidecar binary.

mod admin;
mod audit;
mod check;
mod clock;
mod config;
mod invalidate;
mod pipeline;
mod reference;
mod sweep;
mod telemetry;
mod timed;

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
    /// Load and validate a config file without starting anything: exit 0 when every
    /// section is accepted, else 2 with the file, line, section and key refused.
    CheckConfig {
        /// Config file (TOML).
        #[arg(long, short, env = "COHERENT_CONFIG")]
        config: PathBuf,
    },
    /// Print the configuration reference (Markdown): every section and key, its
    /// default, its environment variable and what a bad value reports, from the code.
    ConfigReference {
        /// Print only the accepted keys, one `section<TAB>key` a line (`section` empty
        /// for top-level keys).
        #[arg(long)]
        keys: bool,
    },
    /// Verify the MySQL prerequisites of a config: binlog settings, grants, rule tables
    /// and columns. Exit status 0 only when every check passes.
    Check {
        /// Config file (TOML).
        #[arg(long, short, env = "COHERENT_CONFIG")]
        config: PathBuf,
    },
    /// Offline audit: compare every row of the rules with a `value` renderer against
    /// the cache. Exit 0: no stale or orphan key; 1: some; 2: error.
    Audit {
        /// Config file (TOML).
        #[arg(long, short, env = "COHERENT_CONFIG")]
        config: PathBuf,
        /// Directory for report.json and report.html.
        #[arg(long)]
        out: PathBuf,
        /// Scan rate limit (0: none).
        #[arg(long, default_value_t = 0)]
        max_rows_per_sec: u64,
    },
    /// Backfill: read a rule table's rows in primary-key order and delete every key
    /// its rules render, through the configured target. For after an outage longer
    /// than the binlog's retention, or a table newly added to the rules.
    Invalidate {
        /// Config file (TOML).
        #[arg(long, short, env = "COHERENT_CONFIG")]
        config: PathBuf,
        /// A rule table, `db.table` (repeatable).
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        table: Vec<String>,
        /// Every table the rules cover.
        #[arg(long)]
        all: bool,
        /// Only rows meeting this SQL condition (`"updated_at > NOW() - INTERVAL 1 DAY"`).
        #[arg(long = "where")]
        condition: Option<String>,
        /// Rows per second at most (0: no limit).
        #[arg(long, default_value_t = 0)]
        rate: u64,
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
            let loaded = config::Config::load(config.as_deref())?;
            let connector = loaded.connector;
            let mut cfg = loaded.config;
            if let Some(l) = listen {
                cfg.engine.listen = l;
            }
            if let Some(p) = requirepass {
                cfg.engine.requirepass = Some(p);
            }
            if let Some(a) = admin_listen {
                cfg.admin.listen = a;
            }
            serve(cfg, connector, config)
        }
        Command::ConfigReference { keys } => {
            if keys {
                for (section, key) in reference::declared_keys() {
                    println!("{section}\t{key}");
                }
            } else {
                print!("{}", reference::markdown());
            }
            Ok(())
        }
        Command::CheckConfig { config } => {
            let loaded = config::Config::load(Some(&config))?;
            println!(
                "{}: ok ({})",
                config.display(),
                if loaded.connector.is_some() {
                    "engine and binlog pipeline"
                } else {
                    "engine only, no [mysql]"
                }
            );
            Ok(())
        }
        Command::Check { config } => {
            let loaded = config::Config::load(Some(&config))?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let name = config.display().to_string();
            if rt.block_on(check::run(&loaded, &name)) {
                Ok(())
            } else {
                // The checks printed what failed; exit 1 without another message.
                std::process::exit(1);
            }
        }
        Command::Audit {
            config,
            out,
            max_rows_per_sec,
        } => {
            let loaded = config::Config::load(Some(&config))?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            if rt.block_on(audit::run(&loaded, &out, max_rows_per_sec))? {
                Ok(())
            } else {
                std::process::exit(1);
            }
        }
        Command::Invalidate {
            config,
            table,
            all,
            condition,
            rate,
        } => {
            let loaded = config::Config::load(Some(&config))?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let req = invalidate::Request {
                tables: table,
                all,
                condition,
                rate,
            };
            let c = rt.block_on(invalidate::run(&loaded, &req))?;
            println!(
                "invalidated: {} tables, {} rows, {} keys deleted",
                c.tables, c.rows, c.keys
            );
            Ok(())
        }
    }
}

fn serve(
    cfg: config::Config,
    connector: Option<(connectors::ConnectorConfig, connectors::rules::Rules)>,
    config_file: Option<PathBuf>,
) -> Result<()> {
    // [engine] io_threads runs the connections; the binlog pipeline, when configured,
    // gets a thread of its own so decoding never stalls clients.
    let threads = cfg.engine.io_threads + usize::from(connector.is_some());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let server = engine::Server::bind(cfg.engine.clone())
            .await
            .with_context(|| format!("cannot listen on {}", cfg.engine.listen))?;
        let addr = server.local_addr()?;
        let engine = server.engine();
        // CONFIG REWRITE (Sentinel sends it at failover) writes the running settings
        // back into the file's [engine] section; absolute, as Redis resolves it at start.
        if let Some(path) = &config_file {
            let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
            engine.set_config_file(path, "engine");
        }
        // The persisted data comes back before anything is served (the RDB file of
        // `dir`/`dbfilename`; a file that cannot be read stops the start).
        let loaded =
            engine::persist::load_at_start(&engine).context("cannot load the persisted data")?;
        if let Some(l) = &loaded {
            tracing::info!(file = %l.path.display(), keys = l.keys, "persisted data loaded");
        }
        // With the binlog pipeline on the embedded engine, loaded keys may have gone
        // stale while we were down: the snapshot's binlog position says from where to
        // replay before serving. A snapshot without one cannot be trusted: flushed.
        let start = match (&connector, &loaded) {
            (Some((cc, _)), _) if cc.target.kind != connectors::targets::TargetKind::Embedded => {
                pipeline::EngineStart::NotTarget
            }
            (Some(_), Some(l)) => {
                let aux = l
                    .aux(pipeline::POSITION_AUX)
                    .or_else(|| l.aux(engine::persist::aof::MARKER_AUX));
                match pipeline::snapshot_position(aux.map(|v| &v[..]))
                    .with_context(|| format!("cannot use {}", l.path.display()))?
                {
                    Some(p) => {
                        engine.set_loading(true);
                        pipeline::EngineStart::Warm(p)
                    }
                    None => {
                        tracing::warn!(file = %l.path.display(), "the snapshot carries no binlog position: its keys may be stale, so the engine starts empty");
                        engine.execute(0, vec!["FLUSHALL".into()]);
                        pipeline::EngineStart::Empty
                    }
                }
            }
            _ => pipeline::EngineStart::Empty,
        };
        // Handlers are installed now, before any "listening" line is printed: a
        // SIGTERM sent right after it must stop us gracefully, not kill us.
        let signals = shutdown_signals()?;
        let telemetry = std::sync::Arc::new(telemetry::Telemetry::new(&cfg.telemetry)?);
        // Keys the external-Redis TTL sweeper fixes (counted with the engine's backstops).
        let swept = sweep::SweptKeys::default();
        telemetry.observe_engine(engine.clone(), swept.clone());
        let pipeline_state = connector
            .as_ref()
            .map(|_| std::sync::Arc::new(pipeline::PipelineState::default()));
        if let Some(p) = &pipeline_state {
            telemetry.observe_pipeline(p.clone());
        }
        // The online checker runs with the pipeline when [audit] sample > 0.
        let audit_state = (connector.is_some() && cfg.audit.enabled())
            .then(|| std::sync::Arc::new(audit::online::AuditState::new(&cfg.audit)));
        if let Some(a) = &audit_state {
            telemetry.observe_audit(a.clone());
        }
        if !cfg.admin.listen.is_empty() {
            let state = admin::AdminState {
                engine: engine.clone(),
                engine_addr: addr.to_string(),
                telemetry: telemetry.clone(),
                started: std::time::Instant::now(),
                pipeline: pipeline_state.clone(),
                audit: audit_state.clone(),
                ready_max_lag_secs: cfg.admin.ready_max_lag_secs,
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
        // The pipeline runs until the engine shuts down (SIGTERM, SIGINT, SHUTDOWN),
        // then flushes its checkpoint; if it fails first, it shuts the engine down and
        // the process exits non-zero with its error.
        let pipeline_task = match (connector, pipeline_state) {
            (Some((cc, rules)), Some(state)) => {
                let e = engine.clone();
                let stop = engine.clone();
                let audit = audit_state.map(|a| (cfg.audit.clone(), a));
                // The engine becomes this replica once the server runs (below).
                let replicaof = cfg.engine.replicaof.clone();
                Some(tokio::spawn(async move {
                    let r = pipeline::run(cc, rules, e.clone(), state, audit, swept, start, replicaof, async move {
                        stop.shutdown_requested().await
                    })
                    .await;
                    if r.is_err() {
                        e.trigger_shutdown();
                    }
                    r
                }))
            }
            _ => None,
        };
        let stop = engine.clone();
        server
            .run(async move {
                signals.await;
                stop.trigger_shutdown();
            })
            .await?;
        let piped = match pipeline_task {
            Some(task) => task
                .await
                .context("the pipeline task panicked")
                .and_then(|r| r.context("binlog pipeline stopped")),
            None => Ok(()),
        };
        // Redis saves on SIGTERM when save points are set (SHUTDOWN saved already).
        let e = engine.clone();
        let saved = tokio::task::spawn_blocking(move || e.save_on_exit())
            .await
            .context("the final save panicked")
            .and_then(|r| r.context("cannot save the RDB file at shutdown"));
        // Last OTLP push (also after a pipeline failure); blocking, so off the workers.
        let t = telemetry.clone();
        let _ = tokio::task::spawn_blocking(move || t.shutdown()).await;
        piped?;
        saved?;
        tracing::info!("shut down");
        Ok(())
    })
}

/// SIGTERM or SIGINT, with the handlers registered when this is called.
fn shutdown_signals() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
