//! Generates the dora type package (`graphs/types/forgeline/messages/v1.yml`) from the schemas.
//!
//! dora derives a type's URN from the package's path below the types directory, so the types
//! written here are `forgeline/messages/v1/Waveform`, `…/Features` and so on (see [`urn`]).
//! The field lists come from the Arrow schemas; nothing is written twice. The test
//! `tests/dora_types.rs` proves that the file on disk is this text and that dora 1.1 resolves
//! every type to our Arrow fields.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use arrow::datatypes::{DataType, SchemaRef};

use crate::common::{Message, UNIT_KEY};
use crate::{Decision, FeatureVector, Frame, Health, Score, Tensor, Waveform};

/// URN prefix of every forgeline message type.
pub const URN_PREFIX: &str = "forgeline/messages/v1";
/// Path of the type package relative to a dora types directory (e.g. `graphs/types`).
pub const PACKAGE_PATH: &str = "forgeline/messages/v1.yml";

/// One dora type: its short name, description and the Arrow schema it mirrors.
#[derive(Debug, Clone)]
pub struct DoraType {
    /// Short name, e.g. `Waveform`.
    pub name: &'static str,
    /// Message name, e.g. `waveform`.
    pub message: &'static str,
    /// One-line description.
    pub description: &'static str,
    /// The message's Arrow schema.
    pub schema: SchemaRef,
}

fn entry<M: Message>(description: &'static str) -> DoraType {
    DoraType {
        name: M::DORA_TYPE,
        message: M::NAME,
        description,
        schema: M::schema(),
    }
}

/// Every message type, in pipeline order.
pub fn dora_types() -> Vec<DoraType> {
    vec![
        entry::<Waveform>("One press stroke of accelerometer samples in g."),
        entry::<FeatureVector>("Feature vector of one stroke plus its data-quality flags."),
        entry::<Score>("Model output (anomaly score or defect probability) for one item."),
        entry::<Decision>("Go/no-go verdict for one item with the evidence behind it."),
        entry::<Frame>("One camera frame, raw row-major interleaved pixels."),
        entry::<Tensor>("A model-ready dense tensor in little-endian bytes."),
        entry::<Health>("An alarm or status report from a node."),
    ]
}

/// Full dora URN of message `M`, e.g. `forgeline/messages/v1/Waveform`.
pub fn urn<M: Message>() -> String {
    format!("{URN_PREFIX}/{}", M::DORA_TYPE)
}

/// dora's name for an Arrow type: the primitive's name, or `List<T>` for `LargeList<T>`.
///
/// `None` for types dora cannot express (its `List<T>` always means `LargeList`).
pub fn dora_type_name(data_type: &DataType) -> Option<String> {
    let name = match data_type {
        DataType::Float32 => "Float32",
        DataType::Float64 => "Float64",
        DataType::Int8 => "Int8",
        DataType::Int16 => "Int16",
        DataType::Int32 => "Int32",
        DataType::Int64 => "Int64",
        DataType::UInt8 => "UInt8",
        DataType::UInt16 => "UInt16",
        DataType::UInt32 => "UInt32",
        DataType::UInt64 => "UInt64",
        DataType::Utf8 => "Utf8",
        DataType::LargeBinary => "LargeBinary",
        DataType::Boolean => "Boolean",
        DataType::LargeList(item) => {
            return Some(format!("List<{}>", dora_type_name(item.data_type())?));
        }
        _ => return None,
    };
    Some(name.to_owned())
}

/// A YAML double-quoted scalar.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The dora type package text for every message (deterministic: same schemas, same bytes).
///
/// A field whose Arrow type dora cannot express is written as `Unsupported<…>`, which dora
/// rejects, so such a schema change fails the drift test instead of passing silently.
pub fn dora_types_yaml() -> String {
    let mut out = String::new();
    out.push_str(
        "# forgeline message types for dora typed ports: forgeline/messages/v1/<Type>.\n\
         # GENERATED from the Arrow schemas in schemas/src by forgeline_schemas::types_yaml.\n\
         # Do not edit; regenerate with:\n\
         #   UPDATE_GOLDEN=1 cargo test -p forgeline-schemas --test dora_types\n\
         # Units live in the Arrow field metadata (`unit`) and are repeated as comments.\n\
         types:\n",
    );
    for ty in dora_types() {
        let description = format!(
            "{} Message `{}`, schema version {}.",
            ty.description,
            ty.message,
            crate::common::SCHEMA_VERSION
        );
        // Writing to a String cannot fail.
        let _ = writeln!(out, "  {}:", ty.name);
        let _ = writeln!(out, "    arrow: Struct");
        let _ = writeln!(out, "    description: {}", quoted(&description));
        let _ = writeln!(out, "    fields:");
        for field in ty.schema.fields() {
            let data_type = dora_type_name(field.data_type())
                .unwrap_or_else(|| format!("Unsupported<{}>", field.data_type()));
            let unit = field
                .metadata()
                .get(UNIT_KEY)
                .map(|unit| format!(" # unit: {unit}"))
                .unwrap_or_default();
            let _ = writeln!(out, "      - name: {}", field.name());
            let _ = writeln!(out, "        type: {data_type}{unit}");
            let _ = writeln!(out, "        nullable: {}", field.is_nullable());
        }
    }
    out
}

/// Writing the type package failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the dora type package `{}`: {source}", path.display())]
pub struct WriteTypesError {
    /// The file or directory that could not be written.
    pub path: PathBuf,
    /// The I/O error.
    pub source: std::io::Error,
}

/// Writes [`dora_types_yaml`] to `<types_dir>/forgeline/messages/v1.yml` and returns that path.
pub fn write_dora_types(types_dir: &Path) -> Result<PathBuf, WriteTypesError> {
    let path = types_dir.join(PACKAGE_PATH);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| WriteTypesError {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(&path, dora_types_yaml()).map_err(|source| WriteTypesError {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_of_every_message_has_a_dora_type() {
        let types = dora_types();
        assert_eq!(types.len(), 7);
        for ty in &types {
            for field in ty.schema.fields() {
                assert!(
                    dora_type_name(field.data_type()).is_some(),
                    "{}.{}",
                    ty.name,
                    field.name()
                );
            }
        }
        let yaml = dora_types_yaml();
        assert!(!yaml.contains("Unsupported"));
        assert!(yaml.contains("        type: List<Float32> # unit: g\n"));
        assert!(yaml.contains("        type: UInt64 # unit: ns\n"));
        assert!(!yaml.contains("nullable: true"));
    }

    #[test]
    fn dora_names_of_types() {
        assert_eq!(
            dora_type_name(&crate::common::list_of(DataType::Int64)).as_deref(),
            Some("List<Int64>")
        );
        assert_eq!(
            dora_type_name(&DataType::LargeBinary).as_deref(),
            Some("LargeBinary")
        );
        assert_eq!(dora_type_name(&DataType::Binary), None);
        assert_eq!(
            dora_type_name(&DataType::new_list(DataType::Float32, true)),
            None
        );
    }

    #[test]
    fn urns_use_the_package_prefix() {
        assert_eq!(urn::<Waveform>(), "forgeline/messages/v1/Waveform");
        assert_eq!(urn::<FeatureVector>(), "forgeline/messages/v1/Features");
        assert_eq!(format!("{URN_PREFIX}.yml"), PACKAGE_PATH);
    }

    #[test]
    fn quoting_escapes_quotes_and_backslashes() {
        assert_eq!(quoted(r#"a "b" \c"#), r#""a \"b\" \\c""#);
    }
}
