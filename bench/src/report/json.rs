//! results.json: the typed model of a results folder, its versioned schema (schema/results.schema.json)
//! and a validator of a JSON value against the subset of JSON Schema that file uses (type, required,
//! properties, items, enum, const). The subset keeps a schema crate out of the build; the schema file is
//! standard JSON Schema, so external tools validate with it too.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cases::{Family, Suite};
use crate::meta::Machine;
use crate::stats::{RatioEstimate, Summary};

/// Bumped on any incompatible change of the model below.
pub const SCHEMA_VERSION: u32 = 1;
pub const SCHEMA_ID: &str = "strata-bench/results";
/// The schema, shipped inside the binary and written next to every results.json.
pub const SCHEMA_TEXT: &str = include_str!("../../schema/results.schema.json");

#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not valid results JSON: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path} does not match the results schema: {problem}")]
    Schema { path: String, problem: String },
    #[error("{path} has schema version {found}, this strata-bench reads version {SCHEMA_VERSION}")]
    Version { path: String, found: u32 },
}

/// The options a run was made with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunOptions {
    pub suite: Suite,
    pub samples: usize,
    pub warmup: usize,
    pub only: Option<String>,
    pub command_line: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub schema: String,
    pub schema_version: u32,
    pub tool_version: String,
    /// Seconds since the Unix epoch at the start of the run.
    pub started_unix: u64,
    pub duration_s: f64,
    pub options: RunOptions,
    pub machine: Machine,
    pub groups: Vec<GroupResult>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupResult {
    pub family: Family,
    pub name: String,
    pub method: String,
    /// Unit of every value in this group.
    pub unit: String,
    pub references: Vec<String>,
    /// Wall time of the whole group (prepare, warm-up, samples, quiesce, teardown).
    pub duration_s: f64,
    pub cases: Vec<CaseRecord>,
    /// subject ÷ reference, CI from paired resampling over interleaving rounds.
    pub ratios: Vec<RatioRecord>,
    /// What the machine was doing meanwhile (absent in results written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<crate::conditions::Conditions>,
}

impl GroupResult {
    pub fn id(&self) -> String {
        format!("{}/{}", self.family, self.name)
    }
    pub fn case(&self, subject: &str) -> Option<&CaseRecord> {
        self.cases.iter().find(|c| c.subject == subject)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Skipped,
    Failed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaseRecord {
    pub subject: String,
    pub status: Status,
    pub reason: Option<String>,
    /// Every raw sample, warm-up excluded, in the order taken.
    pub samples: Vec<SampleRecord>,
    pub summary: Option<Summary>,
    /// Statistics of each named sub-measurement (e.g. strata's phases).
    pub parts: BTreeMap<String, Summary>,
    /// Statistics of each derived metric (e.g. throughput in starts/s).
    pub metrics: BTreeMap<String, Summary>,
}

impl CaseRecord {
    pub fn values(&self) -> Vec<f64> {
        self.samples.iter().map(|s| s.value_ns as f64).collect()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    /// Interleaving round this sample was taken in (pairs samples across subjects).
    pub round: usize,
    pub value_ns: u64,
    /// Outside the Tukey fences of this case's samples; flagged, never dropped.
    pub outlier: bool,
    pub parts_ns: BTreeMap<String, u64>,
    pub metrics: BTreeMap<String, f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RatioRecord {
    pub subject: String,
    pub reference: String,
    #[serde(flatten)]
    pub estimate: RatioEstimate,
}

impl Results {
    pub fn write(&self, dir: &Path) -> Result<(), JsonError> {
        let text = serde_json::to_string_pretty(self).expect("results serialize");
        write_file(&dir.join("results.json"), &text)?;
        write_file(&dir.join("results.schema.json"), SCHEMA_TEXT)
    }

    /// Read and validate `dir/results.json` (schema first, then the typed model).
    pub fn read(dir: &Path) -> Result<Results, JsonError> {
        let path = dir.join("results.json");
        let p = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|source| JsonError::Read {
            path: p.clone(),
            source,
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|source| JsonError::Parse {
            path: p.clone(),
            source,
        })?;
        if let Some(found) = value.get("schema_version").and_then(Value::as_u64)
            && found != u64::from(SCHEMA_VERSION)
        {
            return Err(JsonError::Version {
                path: p,
                found: found as u32,
            });
        }
        validate(&value).map_err(|problem| JsonError::Schema {
            path: p.clone(),
            problem,
        })?;
        serde_json::from_value(value).map_err(|source| JsonError::Parse { path: p, source })
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), JsonError> {
    std::fs::write(path, text).map_err(|source| JsonError::Write {
        path: path.display().to_string(),
        source,
    })
}

/// Validate `value` against the shipped schema.
pub fn validate(value: &Value) -> Result<(), String> {
    let schema: Value = serde_json::from_str(SCHEMA_TEXT).expect("shipped schema is JSON");
    validate_against(&schema, &schema, value, "$")
}

fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .strip_prefix("#/$defs/")
            .and_then(|name| root.get("$defs").and_then(|d| d.get(name)))
            .unwrap_or(schema),
        None => schema,
    }
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_u64() || v.is_i64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => false,
    }
}

/// Validate one node; `at` is the JSON path for the error message.
pub fn validate_against(root: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(root, schema);
    if let Some(ty) = schema.get("type") {
        let ok = match ty {
            Value::String(t) => type_matches(t, v),
            Value::Array(ts) => ts
                .iter()
                .filter_map(Value::as_str)
                .any(|t| type_matches(t, v)),
            _ => true,
        };
        if !ok {
            return Err(format!("{at}: expected type {ty}, found {v}"));
        }
    }
    if let Some(c) = schema.get("const")
        && c != v
    {
        return Err(format!("{at}: expected {c}, found {v}"));
    }
    if let Some(Value::Array(options)) = schema.get("enum")
        && !options.contains(v)
    {
        return Err(format!(
            "{at}: {v} is not one of {}",
            Value::Array(options.clone())
        ));
    }
    if let Value::Object(obj) = v {
        if let Some(Value::Array(req)) = schema.get("required") {
            for name in req.iter().filter_map(Value::as_str) {
                if !obj.contains_key(name) {
                    return Err(format!("{at}: required field \"{name}\" is missing"));
                }
            }
        }
        if let Some(Value::Object(props)) = schema.get("properties") {
            for (name, sub) in props {
                if let Some(child) = obj.get(name) {
                    validate_against(root, sub, child, &format!("{at}.{name}"))?;
                }
            }
        }
        if let Some(extra) = schema.get("additionalProperties").filter(|e| e.is_object()) {
            let props = schema.get("properties").and_then(Value::as_object);
            for (name, child) in obj {
                if props.is_none_or(|p| !p.contains_key(name)) {
                    validate_against(root, extra, child, &format!("{at}.{name}"))?;
                }
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (v, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            validate_against(root, item_schema, item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}
