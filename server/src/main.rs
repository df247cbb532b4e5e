use anyhow::Context;
use clap::Parser;
use kiln_server::cli::{Cli, Command};
use kiln_server::{RunningServer, ServeSettings};

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            // GPU backends log every kernel they autotune at info; that is start-up noise.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,cubecl_runtime=warn".into()),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(settings) => serve(settings),
        Command::Train(args) => Ok(kiln_server::commands::train::run(&args)?),
        Command::Eval(args) => Ok(kiln_server::commands::eval::run(&args)?),
        Command::Export(args) => Ok(kiln_server::commands::export::run(&args)?),
        Command::Health(args) => Ok(kiln_server::commands::health::run(&args)?),
    }
}

fn serve(settings: ServeSettings) -> anyhow::Result<()> {
    kiln_server::placement::prepare(&settings)
        .with_context(|| format!("cannot start the {} backend", settings.backend))?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let server = RunningServer::start(settings.clone())
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (HTTP) and {} (gRPC)",
                    settings.http_addr, settings.grpc_addr
                )
            })?;
        tracing::info!(
            http = %server.http_addr(),
            grpc = %server.grpc_addr(),
            repository = %settings.model_repository.display(),
            backend = %settings.backend,
            "kiln listening"
        );
        server
            .run_until(shutdown_signal())
            .await
            .context("server failed")
    })
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
