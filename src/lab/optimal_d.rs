use anyhow::Result;
use super::LabOptions;
pub(crate) fn run(_opts: &LabOptions) -> Result<(String, serde_json::Value)> { anyhow::bail!("todo") }
