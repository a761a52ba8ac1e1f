use std::path::Path;

use crate::App;

#[derive(clap::Args)]
pub struct Args {}

pub async fn run(config_path: &Path, _args: Args) -> anyhow::Result<()> {
    let config = super::load_config(config_path)?;
    let app = App::build(config).await?;
    app.run_until_stopped().await
}
