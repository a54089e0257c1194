//! `cargo run -p server --example e2e_fixture -- DATA_DIR`: prepares a data
//! dir for the browser tests with the tiny random Llama (engine `fixtures`)
//! registered as the model `tiny`, so real runs train in seconds.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let data_dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or_else(|| anyhow::anyhow!("usage: e2e_fixture DATA_DIR"))?,
    );
    let model_dir = data_dir.join("tiny-llama");
    engine::fixtures::write_tiny_llama(&model_dir, 11)?;
    let (_, store) = server::setup::prepare(&data_dir, None)?;
    store.upsert_model(&server::store::NewModel {
        name: "tiny".into(),
        source: "folder".into(),
        location: model_dir.display().to_string(),
        architecture: Some("llama".into()),
        parameters: None,
        quantization: None,
        size_bytes: None,
        builtin: false,
    })?;
    println!("{}", model_dir.display());
    Ok(())
}
