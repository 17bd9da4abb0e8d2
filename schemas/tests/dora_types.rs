//! The dora type package on disk is generated from the Arrow schemas and dora 1.1 resolves each
//! of its types to exactly our fields: the no-drift proof.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::sync::OnceLock;

use dora_core::types::TypeRegistry;
use forgeline_schemas::arrow::datatypes::{DataType, Field};
use forgeline_schemas::types_yaml::{self, PACKAGE_PATH, URN_PREFIX};

/// `graphs/types` of the workspace. With `UPDATE_GOLDEN=1`, the package is first rewritten from
/// the schemas (once, before any test of this file reads it).
fn types_dir() -> PathBuf {
    static UPDATED: OnceLock<()> = OnceLock::new();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../graphs/types");
    UPDATED.get_or_init(|| {
        if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
            types_yaml::write_dora_types(&dir).unwrap();
        }
    });
    dir
}

#[test]
fn type_package_on_disk_is_the_generated_one() {
    let path = types_dir().join(PACKAGE_PATH);
    let generated = types_yaml::dora_types_yaml();
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "{} is stale or missing (the Arrow schemas changed). Rerun with UPDATE_GOLDEN=1 \
         cargo test -p forgeline-schemas --test dora_types to rewrite it, and review the diff.",
        path.display()
    );
}

/// A field as (name, type, nullable): what a dora type declares; Arrow metadata is left out.
fn without_metadata(field: &Field) -> (String, DataType, bool) {
    (
        field.name().clone(),
        field.data_type().clone(),
        field.is_nullable(),
    )
}

#[test]
fn dora_resolves_every_type_to_our_arrow_fields() {
    let mut registry = TypeRegistry::new();
    let loaded = registry.load_from_dir(&types_dir()).unwrap();
    let types = types_yaml::dora_types();
    assert_eq!(loaded, types.len(), "one dora type per message");
    for ty in types {
        let urn = format!("{URN_PREFIX}/{}", ty.name);
        let def = registry
            .resolve(&urn)
            .unwrap_or_else(|| panic!("dora does not know {urn}"));
        assert_eq!(def.arrow, "Struct", "{urn}");
        assert!(
            def.description.as_deref().is_some_and(|d| !d.is_empty()),
            "{urn} has no description"
        );
        let resolved = def
            .to_arrow_schema_with_registry(&registry)
            .unwrap_or_else(|| panic!("dora cannot resolve every field of {urn}"));
        let theirs: Vec<_> = resolved
            .fields()
            .iter()
            .map(|f| without_metadata(f))
            .collect();
        let ours: Vec<_> = ty
            .schema
            .fields()
            .iter()
            .map(|f| without_metadata(f))
            .collect();
        assert_eq!(
            theirs, ours,
            "{urn} drifted from the Arrow schema of `{}`",
            ty.message
        );
    }
}

#[test]
fn dora_struct_type_matches_the_wire_array() {
    // What a node sends is a StructArray; dora's resolved struct type must be its data type.
    use forgeline_schemas::{Correlation, Message, Waveform};
    let mut registry = TypeRegistry::new();
    registry.load_from_dir(&types_dir()).unwrap();
    let urn = types_yaml::urn::<Waveform>();
    let resolved = registry
        .resolve(&urn)
        .unwrap()
        .to_arrow_schema_with_registry(&registry)
        .unwrap();
    let wire = Waveform::to_wire(&[Waveform {
        key: Correlation::new("press-07", 1, 2),
        sample_rate_hz: 1.0,
        samples: vec![1.0],
        source: String::new(),
    }]);
    let wire_fields: Vec<_> = wire.fields().iter().map(|f| without_metadata(f)).collect();
    let dora_fields: Vec<_> = resolved
        .fields()
        .iter()
        .map(|f| without_metadata(f))
        .collect();
    assert_eq!(wire_fields, dora_fields);
}
