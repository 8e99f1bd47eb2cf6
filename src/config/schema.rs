//! The JSON schema of the configuration, generated from the same types the loader decodes,
//! for editor completion (`# yaml-language-server: $schema=config.schema.json`).

pub fn json_schema() -> String {
    let schema = schemars::schema_for!(super::model::Config);
    serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
}
