//! `vexvisor status`: what is installed, staged and backed up, and the last failure.

use crate::home::{BINARY, Home};
use crate::state::State;
use crate::verify::{sha256_file, version_of};
use anyhow::Result;
use serde_json::{Value, json};

/// The status of a home as JSON.
pub fn status(home: &Home) -> Result<Value> {
    let current = home.current();
    let current_json = if current.exists() {
        json!({
            "path": current.display().to_string(),
            "sha256": sha256_file(&current).map(hex::encode).ok(),
            "version": version_of(&current).map(|v| v.lines().next().unwrap_or("").to_string())
                .unwrap_or_else(|e| format!("does not answer --version: {e:#}")),
        })
    } else {
        Value::Null
    };
    let mut staged = Vec::new();
    if let Ok(entries) = std::fs::read_dir(home.dir().join("upgrades")) {
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().join(BINARY).is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            let path = home.staged(&name);
            staged.push(json!({
                "name": name, "path": path.display().to_string(),
                "sha256": sha256_file(&path).map(hex::encode).ok(),
            }));
        }
    }
    let backups: Vec<Value> = home
        .backups()?
        .iter()
        .map(|b| {
            json!({ "path": b.path.display().to_string(), "replaced_by": b.replaced_by,
                    "at": b.timestamp, "sha256": sha256_file(&b.path).map(hex::encode).ok() })
        })
        .collect();
    let state = State::load(home)?;
    let pending_info = std::fs::read_to_string(vexidus_upgrade_contract::path_in(&home.data_dir()))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok());
    Ok(json!({
        "home": home.root().display().to_string(),
        "current": current_json,
        "staged": staged,
        "backups": backups,
        "failures": state.failures,
        "last_failure": state.last_failure,
        "on_probation": state.probation.as_ref().map(|p| p.name.clone()),
        "applied": state.applied,
        "upgrade_info": pending_info,
    }))
}

/// The status as text for a terminal.
pub fn render(v: &Value) -> String {
    let mut out = String::new();
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    out.push_str(&format!("home:      {}\n", s(&v["home"])));
    if v["current"].is_null() {
        out.push_str("current:   none (run `vexvisor init`)\n");
    } else {
        out.push_str(&format!(
            "current:   {}\n  version: {}\n  sha256:  {}\n",
            s(&v["current"]["path"]),
            s(&v["current"]["version"]),
            s(&v["current"]["sha256"])
        ));
    }
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    out.push_str("staged upgrades:\n");
    for st in list(&v["staged"]) {
        out.push_str(&format!(
            "  {}  sha256 {}\n",
            s(&st["name"]),
            s(&st["sha256"])
        ));
    }
    out.push_str("backups (newest first):\n");
    for (i, b) in list(&v["backups"]).iter().enumerate() {
        out.push_str(&format!(
            "  {}. {}  (replaced by {} at {})\n",
            i + 1,
            s(&b["path"]),
            s(&b["replaced_by"]),
            s(&b["at"])
        ));
    }
    out.push_str(&format!("failures:  {}\n", v["failures"]));
    if let Some(f) = v["last_failure"].as_object() {
        out.push_str(&format!(
            "last failure: {} (upgrade {}, unix time {})\n",
            f.get("what").map(s).unwrap_or_default(),
            f.get("upgrade").map(s).unwrap_or_default(),
            f.get("at").cloned().unwrap_or_default()
        ));
    }
    if let Some(p) = v["on_probation"].as_str() {
        out.push_str(&format!(
            "on probation: {p} (rolled back if it fails within the window)\n"
        ));
    }
    if let Some(i) = v["upgrade_info"].as_object() {
        out.push_str(&format!(
            "upgrade-info.json: {} at height {}\n",
            i.get("name").map(s).unwrap_or_default(),
            i.get("height").cloned().unwrap_or_default()
        ));
    }
    out
}
