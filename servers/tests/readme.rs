//! The top-level README's models table derives from the registry: one row
//! per registered model, in the registry's order, and no row for a model
//! that is not registered.

use std::path::Path;

#[test]
fn the_readme_models_table_has_one_row_per_registered_model_in_order() {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(&readme).expect("README.md at the repository root");
    let table = text.split("## The models").nth(1).expect("a `## The models` section");
    // Rows start with a backticked model name: "| `thread` | …".
    let rows: Vec<&str> = table
        .lines()
        .take_while(|line| !line.starts_with("## "))
        .filter_map(|line| line.strip_prefix("| `")?.split('`').next())
        .collect();
    let registered: Vec<&str> = echo_servers::models::ALL.iter().map(|m| m.name.as_ref()).collect();
    assert_eq!(rows, registered, "README.md's models table and the registry disagree");
}
