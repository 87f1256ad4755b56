//! The worker-api binary: `serve` (default), `migrate`, or `create-user`.

use clap::Parser;

use worker_api::config::{Cli, Command};

/// mimalloc instead of the system allocator: under load the system's spent a
/// quarter of worker-api's time in malloc and free (measured with `perf`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    spotcheck_platform::telemetry::init(cli.config.json_logs());
    cli.config.services.read_secret_files()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = worker_api::App::build(cli.config).await?;
            app.run_until_stopped(spotcheck_platform::shutdown::signal())
                .await
        }
        Command::Migrate => worker_api::app::migrate_only(&cli.config).await,
        Command::CreateUser { username, role } => {
            worker_api::app::create_user_command(&cli.config, &username, &role).await
        }
    }
}
