//! The on-disk registry: install, activate, rollback, history, prune, re-verification,
//! recovery on open, and power-cut safety at every step of install, activate and rollback.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a panic is the failure report

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::{fake_model, keys, signed_press};
use forgeline_registry::{
    Action, PackageError, Registry, RegistryError, SigningKey, Step, Timestamp, TrustedKeys,
    Version, sign,
};

const PROFILE: &str = "x86_64-cpu";

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

fn t(s: u64) -> Timestamp {
    Timestamp::from_unix_ns(s * 1_000_000_000)
}

struct Fixture {
    tmp: tempfile::TempDir,
    sk: SigningKey,
    trusted: TrustedKeys,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let (sk, trusted) = keys(tmp.path(), "keys");
        Self { tmp, sk, trusted }
    }
    fn root(&self) -> PathBuf {
        self.tmp.path().join("registry")
    }
    fn open(&self) -> Registry {
        Registry::open(self.root(), self.trusted.clone()).unwrap()
    }
    fn package(&self, version: &str) -> PathBuf {
        let dir = self.tmp.path().join(format!("pkg-press-{version}"));
        if dir.exists() {
            return dir;
        }
        signed_press(self.tmp.path(), &self.sk, "press", version)
    }
}

fn tmp_is_empty(root: &Path) -> bool {
    fs::read_dir(root.join(".tmp")).unwrap().next().is_none()
}

#[test]
fn install_activate_and_load_the_installed_real_model() {
    let fx = Fixture::new();
    let mut reg = fx.open();
    let installed = reg.install(fx.package("1.0.0"), PROFILE, t(10)).unwrap();
    assert_eq!(
        installed.dir,
        fx.root().join("store/press/1.0.0/x86_64-cpu")
    );
    assert!(!installed.active);
    assert!(matches!(
        reg.active_dir("press", PROFILE),
        Err(RegistryError::NotActive { .. })
    ));

    let act = reg
        .activate("press", &v("1.0.0"), PROFILE, "first model", t(11))
        .unwrap();
    assert_eq!(act.from, None);
    assert_eq!(reg.active_dir("press", PROFILE).unwrap(), installed.dir);
    // The active/ symlink resolves to the same directory and loads as a model.
    let link = reg.active_link("press", PROFILE);
    assert_eq!(
        fs::canonicalize(&link).unwrap(),
        fs::canonicalize(&installed.dir).unwrap()
    );
    let model = forgeline_inference::ModelDir::load(&link).unwrap();
    assert_eq!(model.model_version(), "press@1.0.0");
    forgeline_inference::ModelDir::load(&installed.dir).unwrap();
    assert!(reg.list()[0].active);
    assert!(tmp_is_empty(&fx.root()));
}

#[test]
fn install_never_touches_the_active_model_and_refuses_duplicates() {
    let fx = Fixture::new();
    let mut reg = fx.open();
    reg.install(fx.package("1.0.0"), PROFILE, t(1)).unwrap();
    reg.activate("press", &v("1.0.0"), PROFILE, "go", t(2))
        .unwrap();
    reg.install(fx.package("1.1.0"), PROFILE, t(3)).unwrap();
    assert_eq!(
        reg.active_dir("press", PROFILE).unwrap(),
        fx.root().join("store/press/1.0.0/x86_64-cpu")
    );
    let err = reg.install(fx.package("1.1.0"), PROFILE, t(4)).unwrap_err();
    assert!(
        matches!(err, RegistryError::AlreadyInstalled { .. }),
        "{err}"
    );
    // The same version for another profile is a separate install.
    reg.install(fx.package("1.1.0"), "aarch64-cpu", t(5))
        .unwrap();
    let versions: Vec<(String, String)> = reg
        .list()
        .iter()
        .map(|m| (m.profile.clone(), m.version.to_string()))
        .collect();
    assert_eq!(
        versions,
        [
            ("aarch64-cpu".into(), "1.1.0".into()),
            ("x86_64-cpu".into(), "1.1.0".into()),
            ("x86_64-cpu".into(), "1.0.0".into()),
        ]
    );
}

#[test]
fn refused_packages_leave_nothing_behind() {
    let fx = Fixture::new();
    let mut reg = fx.open();
    // Unsigned.
    let unsigned = common::press_model(&fx.tmp.path().join("unsigned"), "press", "1.0.0");
    let err = reg.install(&unsigned, PROFILE, t(1)).unwrap_err();
    assert!(
        matches!(err, RegistryError::Package(PackageError::Unsigned { .. })),
        "{err}"
    );
    // Signed by a key the box does not trust.
    let (rogue, _) = keys(fx.tmp.path(), "rogue");
    let rogue_pkg = signed_press(&fx.tmp.path().join("rogue-pkgs"), &rogue, "press", "1.0.0");
    let err = reg.install(&rogue_pkg, PROFILE, t(1)).unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::Package(PackageError::UntrustedKey { .. })
        ),
        "{err}"
    );
    // Authentic but not a valid model (fake model.yml): refused by ModelDir::load.
    let fake = fake_model(&fx.tmp.path().join("fake"), "press", "1.0.0");
    sign(&fake, &fx.sk).unwrap();
    let err = reg.install(&fake, PROFILE, t(1)).unwrap_err();
    assert!(matches!(err, RegistryError::InvalidModel { .. }), "{err}");
    // Bad profile name.
    let err = reg.install(fx.package("1.0.0"), "../x", t(1)).unwrap_err();
    assert!(matches!(err, RegistryError::InvalidProfile { .. }), "{err}");

    assert!(reg.list().is_empty());
    assert!(tmp_is_empty(&fx.root()));
    assert!(
        fs::read_dir(fx.root().join("store"))
            .unwrap()
            .next()
            .is_none()
    );
}

#[test]
fn activate_rollback_and_history() {
    let fx = Fixture::new();
    let mut reg = fx.open();
    for (i, ver) in ["1.0.0", "1.1.0", "2.0.0"].iter().enumerate() {
        reg.install(fx.package(ver), PROFILE, t(i as u64)).unwrap();
    }
    reg.activate("press", &v("1.0.0"), PROFILE, "commissioning", t(100))
        .unwrap();
    reg.activate("press", &v("1.1.0"), PROFILE, "retrained on line 4", t(200))
        .unwrap();
    reg.activate("press", &v("2.0.0"), PROFILE, "new feature set", t(300))
        .unwrap();
    let err = reg
        .activate("press", &v("2.0.0"), PROFILE, "again", t(301))
        .unwrap_err();
    assert!(matches!(err, RegistryError::AlreadyActive { .. }), "{err}");

    let back = reg
        .rollback("press", PROFILE, "false rejects on die 7", t(400))
        .unwrap();
    assert_eq!((back.from, back.to.clone()), (Some(v("2.0.0")), v("1.1.0")));
    assert_eq!(reg.active_dir("press", PROFILE).unwrap(), back.dir);
    let back = reg.rollback("press", PROFILE, "still bad", t(500)).unwrap();
    assert_eq!(back.to, v("1.0.0"));
    let err = reg.rollback("press", PROFILE, "more", t(600)).unwrap_err();
    assert!(matches!(err, RegistryError::NoPrevious { .. }), "{err}");
    let err = reg.rollback("press", "cuda", "x", t(600)).unwrap_err();
    assert!(matches!(err, RegistryError::NotActive { .. }), "{err}");

    let status = reg.show("press").unwrap();
    let history: Vec<(u64, Action, Option<String>, String, &str)> = status
        .history
        .iter()
        .map(|h| {
            (
                h.at.unix_ns() / 1_000_000_000,
                h.action,
                h.from.as_ref().map(ToString::to_string),
                h.to.to_string(),
                h.reason.as_str(),
            )
        })
        .collect();
    assert_eq!(
        history,
        [
            (100, Action::Activate, None, "1.0.0".into(), "commissioning"),
            (
                200,
                Action::Activate,
                Some("1.0.0".into()),
                "1.1.0".into(),
                "retrained on line 4"
            ),
            (
                300,
                Action::Activate,
                Some("1.1.0".into()),
                "2.0.0".into(),
                "new feature set"
            ),
            (
                400,
                Action::Rollback,
                Some("2.0.0".into()),
                "1.1.0".into(),
                "false rejects on die 7"
            ),
            (
                500,
                Action::Rollback,
                Some("1.1.0".into()),
                "1.0.0".into(),
                "still bad"
            ),
        ]
    );
    assert_eq!(status.active.len(), 1);
    assert_eq!(status.active[0].version, v("1.0.0"));
    assert_eq!(status.active[0].previous, None);

    // History and active state survive a reopen.
    drop(reg);
    let reg = fx.open();
    assert_eq!(reg.show("press").unwrap(), status);
    assert!(matches!(
        reg.show("nope"),
        Err(RegistryError::NotInstalled { .. })
    ));
}

#[test]
fn prune_keeps_newest_active_and_rollback_target() {
    let fx = Fixture::new();
    let mut reg = fx.open();
    for (i, ver) in ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.10.0"]
        .iter()
        .enumerate()
    {
        reg.install(fx.package(ver), PROFILE, t(i as u64 + 1))
            .unwrap();
    }
    reg.activate("press", &v("1.1.0"), PROFILE, "a", t(10))
        .unwrap();
    reg.activate("press", &v("1.2.0"), PROFILE, "b", t(11))
        .unwrap();

    // Nothing installed before t=0: nothing removed, whatever keep_n says.
    assert!(reg.prune(0, t(0)).unwrap().is_empty());

    // keep_n = 1: 1.10.0 is the newest by semver (not by string: "1.10" < "1.3").
    // 1.2.0 active, 1.1.0 rollback target, so only 1.3.0 and 1.0.0 go.
    let removed = reg.prune(1, t(100)).unwrap();
    let mut gone: Vec<String> = removed.iter().map(|m| m.version.to_string()).collect();
    gone.sort();
    assert_eq!(gone, ["1.0.0", "1.3.0"]);
    let left: Vec<String> = reg.list().iter().map(|m| m.version.to_string()).collect();
    assert_eq!(left, ["1.10.0", "1.2.0", "1.1.0"]);
    assert!(!fx.root().join("store/press/1.0.0").exists());
    assert!(!fx.root().join("store/press/1.3.0").exists());
    assert!(fx.root().join("store/press/1.1.0/x86_64-cpu").is_dir());

    // keep_n = 0 still spares active and rollback target; 1.10.0 was installed at t=5.
    assert!(reg.prune(0, t(5)).unwrap().is_empty());
    let removed = reg.prune(0, t(6)).unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].version, v("1.10.0"));
    reg.rollback("press", PROFILE, "works after prune", t(20))
        .unwrap();
    assert_eq!(
        reg.active_dir("press", PROFILE).unwrap(),
        fx.root().join("store/press/1.1.0/x86_64-cpu")
    );
    assert!(tmp_is_empty(&fx.root()));
}

#[test]
fn tampering_in_the_store_blocks_activation_naming_the_file() {
    let fx = Fixture::new();
    let mut reg = fx.open();
    let installed = reg.install(fx.package("1.0.0"), PROFILE, t(1)).unwrap();
    let onnx = installed.dir.join("model.int8.onnx");
    let mut bytes = fs::read(&onnx).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&onnx, bytes).unwrap();
    let err = reg
        .verify_installed("press", &v("1.0.0"), PROFILE)
        .unwrap_err();
    assert!(
        err.to_string().contains("model.int8.onnx: tampered"),
        "{err}"
    );
    let err = reg
        .activate("press", &v("1.0.0"), PROFILE, "x", t(2))
        .unwrap_err();
    assert!(err.to_string().contains("model.int8.onnx"), "{err}");
    assert!(reg.show("press").unwrap().history.is_empty());
}

#[test]
fn revoking_a_key_blocks_its_installed_models() {
    let fx = Fixture::new();
    let mut reg = fx.open();
    reg.install(fx.package("1.0.0"), PROFILE, t(1)).unwrap();
    drop(reg);
    let reg = Registry::open(fx.root(), TrustedKeys::new()).unwrap();
    let err = reg
        .verify_installed("press", &v("1.0.0"), PROFILE)
        .unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::Package(PackageError::UntrustedKey { .. })
        ),
        "{err}"
    );
}

#[test]
fn a_second_open_is_refused_while_locked() {
    let fx = Fixture::new();
    let reg = fx.open();
    let err = Registry::open(fx.root(), fx.trusted.clone()).unwrap_err();
    assert!(matches!(err, RegistryError::Locked { .. }), "{err}");
    drop(reg);
    fx.open();
}

#[test]
fn corrupt_state_is_reported_not_reset() {
    let fx = Fixture::new();
    let mut reg = fx.open();
    reg.install(fx.package("1.0.0"), PROFILE, t(1)).unwrap();
    drop(reg);
    fs::write(
        fx.root().join("registry.json"),
        b"{\"format\": 1, \"models\": {",
    )
    .unwrap();
    let err = Registry::open(fx.root(), fx.trusted.clone()).unwrap_err();
    assert!(matches!(err, RegistryError::CorruptState { .. }), "{err}");
    assert!(err.to_string().contains("registry.json"), "{err}");
    // The store was not swept on the strength of a state that could not be read.
    assert!(fx.root().join("store/press/1.0.0/x86_64-cpu").is_dir());
}

#[test]
fn open_cleans_leftovers_and_repairs_pointers() {
    let fx = Fixture::new();
    let mut reg = fx.open();
    reg.install(fx.package("1.0.0"), PROFILE, t(1)).unwrap();
    reg.activate("press", &v("1.0.0"), PROFILE, "go", t(2))
        .unwrap();
    drop(reg);
    let root = fx.root();
    fs::create_dir_all(root.join(".tmp/install.7/sub")).unwrap();
    fs::write(root.join(".tmp/registry.json.3"), b"{").unwrap();
    fs::create_dir_all(root.join("store/press/9.9.9/x86_64-cpu")).unwrap();
    fs::create_dir_all(root.join("store/ghost/1.0.0/cuda")).unwrap();
    fs::remove_file(root.join("active/press/x86_64-cpu")).unwrap();
    std::os::unix::fs::symlink("/nonexistent", root.join("active/press/cuda")).unwrap();

    let reg = fx.open();
    assert!(tmp_is_empty(&root));
    assert!(!root.join("store/press/9.9.9").exists());
    assert!(!root.join("store/ghost").exists());
    assert!(!root.join("active/press/cuda").exists());
    assert_eq!(
        fs::canonicalize(reg.active_link("press", PROFILE)).unwrap(),
        fs::canonicalize(root.join("store/press/1.0.0/x86_64-cpu")).unwrap()
    );
    reg.verify_installed("press", &v("1.0.0"), PROFILE).unwrap();
}

/// What the box runs after a power cut: either version, never a broken one.
fn check_consistent(fx: &Fixture, allowed: &[&str]) -> Option<Version> {
    let reg = fx.open();
    let root = fx.root();
    assert!(tmp_is_empty(&root), "leftovers in .tmp after open");
    // Every store directory is recorded, every record has its directory and verifies.
    for m in reg.list() {
        reg.verify_installed(&m.name, &m.version, &m.profile)
            .unwrap();
    }
    let mut on_disk = Vec::new();
    for version in fs::read_dir(root.join("store/press")).into_iter().flatten() {
        let version = version.unwrap();
        for profile in fs::read_dir(version.path()).unwrap() {
            on_disk.push(profile.unwrap().path());
        }
    }
    assert_eq!(on_disk.len(), reg.list().len(), "store {on_disk:?}");
    let active = reg
        .show("press")
        .ok()?
        .active
        .into_iter()
        .find(|s| s.profile == PROFILE)?;
    assert!(
        allowed.contains(&active.version.to_string().as_str()),
        "active {} not in {allowed:?}",
        active.version
    );
    let identity = reg
        .verify_installed("press", &active.version, PROFILE)
        .unwrap();
    assert_eq!(identity.version, active.version);
    assert_eq!(
        fs::canonicalize(reg.active_link("press", PROFILE)).unwrap(),
        fs::canonicalize(&active.dir).unwrap()
    );
    forgeline_inference::ModelDir::load(reg.active_link("press", PROFILE)).unwrap();
    Some(active.version)
}

/// Stops the registry at the `n`-th step it reports; records the steps seen.
fn cut_at(n: usize) -> (forgeline_registry::FaultHook, Arc<Mutex<Vec<Step>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let hook = Box::new(move |step: Step| {
        let mut log = log.lock().unwrap();
        log.push(step);
        log.len() == n
    });
    (hook, seen)
}

#[test]
fn power_cut_at_every_step_of_install_activate_rollback_leaves_old_or_new_state() {
    let fx = Fixture::new();
    let pkg1 = fx.package("1.0.0");
    let pkg2 = fx.package("2.0.0");
    let root = fx.root();
    let mut all_steps = Vec::new();
    let mut cuts = 0;
    for n in 1.. {
        fs::remove_dir_all(&root).ok();
        let mut reg = fx.open();
        reg.install(&pkg1, PROFILE, t(1)).unwrap();
        reg.activate("press", &v("1.0.0"), PROFILE, "base", t(2))
            .unwrap();
        let (hook, seen) = cut_at(n);
        reg.set_fault_hook(Some(hook));
        let result = (|| {
            reg.install(&pkg2, PROFILE, t(3))?;
            reg.activate("press", &v("2.0.0"), PROFILE, "upgrade", t(4))?;
            reg.rollback("press", PROFILE, "revert", t(5))?;
            reg.activate("press", &v("2.0.0"), PROFILE, "again", t(6))
        })();
        drop(reg); // the process dies: no clean-up beyond what already happened
        let steps = seen.lock().unwrap().clone();
        match result {
            Err(RegistryError::Interrupted { step }) => {
                cuts += 1;
                assert_eq!(Some(&step), steps.last());
                let active = check_consistent(&fx, &["1.0.0", "2.0.0"]);
                assert!(active.is_some(), "cut at {step:?}: nothing active");
                // The operator retries; the registry is usable and reaches the new state.
                let mut reg = fx.open();
                if reg.list().iter().all(|m| m.version != v("2.0.0")) {
                    reg.install(&pkg2, PROFILE, t(7)).unwrap();
                }
                if reg
                    .active_dir("press", PROFILE)
                    .unwrap()
                    .ends_with("1.0.0/x86_64-cpu")
                {
                    reg.activate("press", &v("2.0.0"), PROFILE, "retry", t(8))
                        .unwrap();
                }
                drop(reg);
                assert_eq!(check_consistent(&fx, &["2.0.0"]), Some(v("2.0.0")));
            }
            Ok(_) => {
                all_steps = steps;
                break;
            }
            Err(e) => panic!("cut {n}: unexpected error {e}"),
        }
    }
    // Every step kind of install and activation was exercised, each cut once.
    for step in [
        Step::InstallStaged,
        Step::InstallCopyPartial,
        Step::InstallVerified,
        Step::InstallRenamed,
        Step::StateTempWritten,
        Step::StateRenamed,
        Step::ActivateVerified,
        Step::PointerTempCreated,
        Step::PointerRenamed,
    ] {
        assert!(
            all_steps.contains(&step),
            "{step:?} never reached: {all_steps:?}"
        );
    }
    assert_eq!(cuts, all_steps.len());
    eprintln!("{cuts} cut points: {all_steps:?}");
    assert!(cuts >= 20, "only {cuts} cut points");
}

/// The update path: install, activation on probation, failed health reports and the automatic
/// rollback, cut at every step: the old or the new version is active, the probation is either
/// recorded with the activation or absent with it, and a retry reaches a consistent state.
#[test]
fn power_cut_at_every_step_of_probation_and_auto_rollback_leaves_old_or_new_state() {
    let fx = Fixture::new();
    let pkg1 = fx.package("1.0.0");
    let pkg2 = fx.package("2.0.0");
    let root = fx.root();
    let mut cuts = 0;
    for n in 1.. {
        fs::remove_dir_all(&root).ok();
        let mut reg = fx.open();
        reg.install(&pkg1, PROFILE, t(1)).unwrap();
        reg.activate("press", &v("1.0.0"), PROFILE, "base", t(2))
            .unwrap();
        let (hook, seen) = cut_at(n);
        reg.set_fault_hook(Some(hook));
        let result = (|| {
            reg.install(&pkg2, PROFILE, t(3))?;
            reg.activate_on_probation("press", &v("2.0.0"), PROFILE, "update", t(4), t(100), 2)?;
            reg.report_health("press", PROFILE, false, "no scores", t(5))?;
            reg.report_health("press", PROFILE, false, "crash loop", t(6))
        })();
        drop(reg);
        let steps = seen.lock().unwrap().clone();
        match result {
            Err(RegistryError::Interrupted { step }) => {
                cuts += 1;
                assert_eq!(Some(&step), steps.last());
                let active = check_consistent(&fx, &["1.0.0", "2.0.0"]).unwrap();
                let reg = fx.open();
                // 2.0.0 active always comes with its probation (same state write).
                if active == v("2.0.0") {
                    let p = reg
                        .probation("press", PROFILE)
                        .expect("2.0.0 active without probation");
                    assert_eq!(p.version, v("2.0.0"));
                    assert!(p.failures.len() < 2);
                }
            }
            Ok(outcome) => {
                assert!(matches!(
                    outcome,
                    forgeline_registry::HealthOutcome::RolledBack(_)
                ));
                assert_eq!(check_consistent(&fx, &["1.0.0"]), Some(v("1.0.0")));
                let reg = fx.open();
                assert!(reg.probation("press", PROFILE).is_none());
                let last = reg.show("press").unwrap().history.pop().unwrap();
                assert_eq!(last.action, Action::Rollback);
                assert!(
                    last.reason.contains("auto-rollback") && last.reason.contains("crash loop")
                );
                assert_eq!(cuts, steps.len());
                break;
            }
            Err(e) => panic!("cut {n}: unexpected error {e}"),
        }
    }
    assert!(cuts >= 15, "only {cuts} cut points");
}

#[test]
fn probation_passes_after_its_window_and_healthy_reports_record_nothing() {
    let fx = Fixture::new();
    let mut reg = fx.open();
    reg.install(fx.package("1.0.0"), PROFILE, t(1)).unwrap();
    reg.activate("press", &v("1.0.0"), PROFILE, "base", t(2))
        .unwrap();
    reg.install(fx.package("2.0.0"), PROFILE, t(3)).unwrap();
    reg.activate_on_probation("press", &v("2.0.0"), PROFILE, "update", t(4), t(100), 3)
        .unwrap();
    use forgeline_registry::HealthOutcome;
    assert_eq!(
        reg.report_health("press", PROFILE, true, "fine", t(5))
            .unwrap(),
        HealthOutcome::Noted
    );
    assert!(matches!(
        reg.report_health("press", PROFILE, false, "blip", t(6))
            .unwrap(),
        HealthOutcome::FailureRecorded {
            failures: 1,
            max_failures: 3,
            ..
        }
    ));
    assert_eq!(
        reg.report_health("press", PROFILE, false, "late", t(101))
            .unwrap(),
        HealthOutcome::ProbationPassed {
            version: v("2.0.0")
        }
    );
    // After the probation, failures no longer roll back.
    for i in 0..5 {
        assert_eq!(
            reg.report_health("press", PROFILE, false, "after", t(102 + i))
                .unwrap(),
            HealthOutcome::Noted
        );
    }
    assert_eq!(reg.show("press").unwrap().active[0].version, v("2.0.0"));
    // The probation survives a reopen (it is in registry.json).
    reg.install(fx.package("3.0.0"), PROFILE, t(200)).unwrap();
    reg.activate_on_probation("press", &v("3.0.0"), PROFILE, "update", t(201), t(300), 1)
        .unwrap();
    drop(reg);
    let mut reg = fx.open();
    assert_eq!(reg.probation("press", PROFILE).unwrap().version, v("3.0.0"));
    assert!(matches!(
        reg.report_health("press", PROFILE, false, "bad", t(202))
            .unwrap(),
        HealthOutcome::RolledBack(_)
    ));
    assert_eq!(reg.show("press").unwrap().active[0].version, v("2.0.0"));
}

#[test]
fn power_cut_during_prune_keeps_a_consistent_store() {
    let fx = Fixture::new();
    let root = fx.root();
    let pkgs: Vec<PathBuf> = ["1.0.0", "1.1.0", "1.2.0"]
        .iter()
        .map(|s| fx.package(s))
        .collect();
    for n in 1..=3 {
        fs::remove_dir_all(&root).ok();
        let mut reg = fx.open();
        for (i, p) in pkgs.iter().enumerate() {
            reg.install(p, PROFILE, t(i as u64)).unwrap();
        }
        reg.activate("press", &v("1.2.0"), PROFILE, "go", t(10))
            .unwrap();
        let (hook, _) = cut_at(n);
        reg.set_fault_hook(Some(hook));
        let err = reg.prune(0, t(100)).unwrap_err();
        assert!(matches!(err, RegistryError::Interrupted { .. }), "{err}");
        drop(reg);
        assert_eq!(check_consistent(&fx, &["1.2.0"]), Some(v("1.2.0")));
        let reg = fx.open();
        // Old (both versions kept) or new (both pruned) state, never one removed and the
        // other half-gone.
        let n_installed = reg.list().len();
        assert!(n_installed == 3 || n_installed == 1, "{n_installed}");
    }
}

mod model_based {
    //! Random sequences of activate / rollback / prune / reopen against a reference model.

    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    const VERSIONS: [&str; 4] = ["1.0.0", "1.2.0", "1.10.0", "2.0.0"];

    #[derive(Debug, Clone)]
    enum Op {
        Activate(usize),
        Rollback,
        Prune { keep_n: usize, older_than: u64 },
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..VERSIONS.len()).prop_map(Op::Activate),
            2 => Just(Op::Rollback),
            1 => (0..3usize, 0..6u64).prop_map(|(keep_n, older_than)| Op::Prune { keep_n, older_than }),
            1 => Just(Op::Reopen),
        ]
    }

    /// Signed packages shared by every case (signing is not what is under test here).
    fn packages() -> &'static (Fixture, Vec<PathBuf>) {
        static PKGS: OnceLock<(Fixture, Vec<PathBuf>)> = OnceLock::new();
        PKGS.get_or_init(|| {
            let fx = Fixture::new();
            let pkgs = VERSIONS.iter().map(|s| fx.package(s)).collect();
            (fx, pkgs)
        })
    }

    #[derive(Default, Debug)]
    struct Reference {
        installed: Vec<usize>, // indices into VERSIONS; installed_at = index + 1
        active: Option<usize>,
        stack: Vec<usize>,
    }

    impl Reference {
        fn apply(&mut self, op: &Op) {
            match *op {
                Op::Activate(i) => {
                    if self.installed.contains(&i) && self.active != Some(i) {
                        self.stack.retain(|&x| x != i);
                        if let Some(a) = self.active {
                            self.stack.push(a);
                        }
                        self.active = Some(i);
                    }
                }
                Op::Rollback => {
                    if self.active.is_some()
                        && let Some(&top) = self.stack.last()
                    {
                        self.stack.pop();
                        self.active = Some(top);
                    }
                }
                Op::Prune { keep_n, older_than } => {
                    let mut by_version = self.installed.clone();
                    // VERSIONS is in ascending semver order, so index order is version order.
                    by_version.sort_unstable_by(|a, b| b.cmp(a));
                    let gone: Vec<usize> = by_version
                        .into_iter()
                        .skip(keep_n)
                        .filter(|&i| {
                            Some(i) != self.active
                                && Some(&i) != self.stack.last()
                                && (i as u64 + 1) < older_than
                        })
                        .collect();
                    self.installed.retain(|i| !gone.contains(i));
                    self.stack.retain(|i| !gone.contains(i));
                }
                Op::Reopen => {}
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn registry_matches_reference_model(ops in proptest::collection::vec(op(), 1..14)) {
            let (fx, pkgs) = packages();
            let root = tempfile::tempdir().unwrap();
            let open = || Registry::open(root.path(), fx.trusted.clone()).unwrap();
            let mut reg = open();
            let mut reference = Reference::default();
            for (i, p) in pkgs.iter().enumerate() {
                reg.install(p, PROFILE, t(i as u64 + 1)).unwrap();
                reference.installed.push(i);
            }
            for op in &ops {
                let result = match *op {
                    Op::Activate(i) => reg.activate("press", &v(VERSIONS[i]), PROFILE, "p", t(9)).map(|_| ()),
                    Op::Rollback => reg.rollback("press", PROFILE, "p", t(9)).map(|_| ()),
                    Op::Prune { keep_n, older_than } => reg.prune(keep_n, t(older_than)).map(|_| ()),
                    Op::Reopen => {
                        drop(reg);
                        reg = open();
                        Ok(())
                    }
                };
                reference.apply(op);
                // Refusals are fine (not installed, already active, nothing to roll back to)
                // but must be of those kinds.
                if let Err(e) = result {
                    prop_assert!(
                        matches!(e, RegistryError::NotInstalled { .. } | RegistryError::AlreadyActive { .. }
                            | RegistryError::NoPrevious { .. } | RegistryError::NotActive { .. }),
                        "{op:?}: {e}"
                    );
                }
                let mut installed: Vec<String> = reg.list().iter().map(|m| m.version.to_string()).collect();
                installed.reverse();
                let expected: Vec<String> = reference.installed.iter().map(|&i| VERSIONS[i].to_string()).collect();
                prop_assert_eq!(installed, expected, "after {:?}", op);
                let status = reg.show("press").unwrap();
                let active = status.active.first();
                prop_assert_eq!(active.map(|s| s.version.to_string()), reference.active.map(|i| VERSIONS[i].to_string()));
                prop_assert_eq!(
                    active.and_then(|s| s.previous.as_ref()).map(ToString::to_string),
                    reference.stack.last().map(|&i| VERSIONS[i].to_string())
                );
                if let Some(a) = active {
                    reg.verify_installed("press", &a.version, PROFILE).unwrap();
                    prop_assert_eq!(
                        fs::canonicalize(reg.active_link("press", PROFILE)).unwrap(),
                        fs::canonicalize(&a.dir).unwrap()
                    );
                }
            }
        }
    }
}
