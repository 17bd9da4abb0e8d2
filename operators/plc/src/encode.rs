//! Pure encoding of a [`Decision`] into Modbus writes, following a [`RegisterMap`].

use forgeline_schemas::{Decision, Severity, Verdict};

use crate::config::{FAIL_SAFE_PREFIX, RegisterMap, ScoreFormat, WordOrder};

/// One Modbus write: a coil (FC5) or a block of consecutive holding registers (FC6 for one
/// word, FC16 for more).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Set one coil.
    Coil {
        /// Coil address (0-based, as on the wire).
        address: u16,
        /// Value.
        value: bool,
    },
    /// Set consecutive holding registers starting at `address`.
    Registers {
        /// First register address (0-based, as on the wire).
        address: u16,
        /// Values, one per register.
        words: Vec<u16>,
    },
}

impl Write {
    /// A short description for logs and errors, e.g. `registers 0..7` or `coil 0`.
    pub fn describe(&self) -> String {
        match self {
            Self::Coil { address, .. } => format!("coil {address}"),
            Self::Registers { address, words } => match words.len() {
                1 => format!("register {address}"),
                n => format!("registers {address}..{}", usize::from(*address) + n - 1),
            },
        }
    }
}

/// The verdict code written to `verdict_register`.
pub fn verdict_code(verdict: Verdict) -> u16 {
    match verdict {
        Verdict::NoDecision => 0,
        Verdict::Ok => 1,
        Verdict::Reject => 2,
        Verdict::SensorFault => 3,
    }
}

/// The severity code written to `severity_register`.
pub fn severity_code(severity: Severity) -> u16 {
    match severity {
        Severity::None => 0,
        Severity::Warning => 1,
        Severity::Critical => 2,
    }
}

/// Whether `decision` is a fail-safe verdict (its reason starts with [`FAIL_SAFE_PREFIX`]).
pub fn is_fail_safe(decision: &Decision) -> bool {
    decision.reason.starts_with(FAIL_SAFE_PREFIX)
}

/// The 16-bit code of a model version string.
///
/// `name@MAJOR.MINOR[.PATCH]` (or `MAJOR.MINOR…`, optional leading `v`) with `minor < 100` and
/// `major*100+minor < 65536` gives `major*100+minor` (`press-anomaly@1.2.0` → 102); an empty
/// string gives 0; anything else a 16-bit FNV-1a hash of the whole string (stable across runs).
pub fn model_version_code(version: &str) -> u16 {
    if version.is_empty() {
        return 0;
    }
    let semver = version.rsplit_once('@').map_or(version, |(_, v)| v);
    let semver = semver.strip_prefix('v').unwrap_or(semver);
    let mut parts = semver.split(['.', '-', '+']);
    let parsed = parts
        .next()
        .and_then(|major| major.parse::<u32>().ok())
        .zip(parts.next().and_then(|minor| minor.parse::<u32>().ok()));
    if let Some((major, minor)) = parsed
        && minor < 100
        && let Ok(code) = u16::try_from(major * 100 + minor)
    {
        return code;
    }
    let hash = version.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    // Fold to 16 bits; the truncation is the point.
    ((hash >> 16) ^ (hash & 0xFFFF)) as u16
}

/// A 32-bit value as two words in `order`.
pub fn split_u32(value: u32, order: WordOrder) -> [u16; 2] {
    let (high, low) = ((value >> 16) as u16, (value & 0xFFFF) as u16);
    match order {
        WordOrder::Big => [high, low],
        WordOrder::Little => [low, high],
    }
}

/// Two words in `order` back to a 32-bit value (inverse of [`split_u32`]).
pub fn join_u32(words: [u16; 2], order: WordOrder) -> u32 {
    let (high, low) = match order {
        WordOrder::Big => (words[0], words[1]),
        WordOrder::Little => (words[1], words[0]),
    };
    (u32::from(high) << 16) | u32::from(low)
}

/// The score as register words for `format` (see [`ScoreFormat`] for NaN and saturation).
#[expect(
    clippy::cast_possible_truncation,
    reason = "values are clamped to the target range first"
)]
pub fn score_words(score: f32, format: ScoreFormat, scale: f32, order: WordOrder) -> Vec<u16> {
    match format {
        ScoreFormat::Float32 => split_u32(score.to_bits(), order).to_vec(),
        ScoreFormat::ScaledI16 if score.is_nan() => vec![i16::MIN.cast_unsigned()],
        ScoreFormat::ScaledI16 => {
            let scaled = (score * scale)
                .round()
                .clamp(-f32::from(i16::MAX), f32::from(i16::MAX));
            vec![(scaled as i16).cast_unsigned()]
        }
        ScoreFormat::ScaledU16 if score.is_nan() => vec![u16::MAX],
        ScoreFormat::ScaledU16 => {
            vec![(score * scale).round().clamp(0.0, f32::from(u16::MAX - 1)) as u16]
        }
    }
}

impl RegisterMap {
    /// The writes that put `decision` on the PLC. Only configured addresses are written; the
    /// heartbeat is not part of it (see [`RegisterMap::encode_heartbeat`]).
    ///
    /// Order: the reject coil first, then the register blocks (adjacent registers merged into one
    /// FC16 request, which the PLC applies atomically), the block holding `seq` last, so a PLC
    /// that latches on a change of `seq` sees the complete new state.
    pub fn encode(&self, decision: &Decision) -> Vec<Write> {
        let mut words: Vec<(u16, u16)> = Vec::with_capacity(8);
        let mut put = |address: Option<u16>, values: &[u16]| {
            if let Some(start) = address {
                words.extend(
                    values
                        .iter()
                        .enumerate()
                        .map(|(i, &w)| (start.wrapping_add(i as u16), w)),
                );
            }
        };
        put(self.verdict_register, &[verdict_code(decision.verdict)]);
        put(self.severity_register, &[severity_code(decision.severity)]);
        put(
            self.score_registers,
            &score_words(
                decision.score,
                self.score_format,
                self.score_scale,
                self.word_order,
            ),
        );
        put(
            self.model_version_register,
            &[model_version_code(&decision.model_version)],
        );
        put(
            self.fail_safe_register,
            &[u16::from(is_fail_safe(decision))],
        );
        // Low 32 bits of the stroke number; the truncation is documented.
        put(
            self.seq_registers,
            &split_u32(decision.key.seq as u32, self.word_order),
        );
        words.sort_by_key(|&(address, _)| address);

        let mut blocks: Vec<(u16, Vec<u16>)> = Vec::new();
        for (address, word) in words {
            match blocks.last_mut() {
                Some((start, block))
                    if usize::from(*start) + block.len() == usize::from(address) =>
                {
                    block.push(word)
                }
                _ => blocks.push((address, vec![word])),
            }
        }
        if let Some(seq) = self.seq_registers
            && let Some(i) = blocks.iter().position(|(start, block)| {
                (usize::from(*start)..usize::from(*start) + block.len()).contains(&usize::from(seq))
            })
        {
            let seq_block = blocks.remove(i);
            blocks.push(seq_block);
        }

        let mut writes = Vec::with_capacity(blocks.len() + 1);
        if let Some(address) = self.reject_coil {
            writes.push(Write::Coil {
                address,
                value: self.reject_on.contains(&decision.verdict),
            });
        }
        writes.extend(
            blocks
                .into_iter()
                .map(|(address, words)| Write::Registers { address, words }),
        );
        writes
    }

    /// The write of heartbeat value `counter`, when a heartbeat register is configured.
    pub fn encode_heartbeat(&self, counter: u16) -> Option<Write> {
        self.heartbeat_register.map(|address| Write::Registers {
            address,
            words: vec![counter],
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use forgeline_schemas::Correlation;
    use proptest::prelude::*;

    fn decision(verdict: Verdict, severity: Severity, score: f32) -> Decision {
        Decision {
            key: Correlation::new("press-07", 0x0001_0002_0003, 9),
            verdict,
            severity,
            score,
            threshold: 3.0,
            model_version: "press-anomaly@1.2.0".into(),
            reason: "test".into(),
            decided_time_ns: 10,
            source: "simulated".into(),
        }
    }

    /// The default map: coil 0; registers 0 verdict, 1 severity, 2-3 score, 4-5 seq,
    /// 6 model version, 7 fail-safe: one coil write and one 8-register block.
    #[test]
    fn encode_table_for_each_verdict_with_the_default_map() {
        let map = RegisterMap::default();
        let score = 4.25_f32.to_bits();
        let (score_hi, score_lo) = ((score >> 16) as u16, score as u16);
        // (verdict, severity, coil, verdict code, severity code)
        let table = [
            (Verdict::Ok, Severity::None, false, 1, 0),
            (Verdict::Reject, Severity::Critical, true, 2, 2),
            (Verdict::Reject, Severity::Warning, true, 2, 1),
            (Verdict::SensorFault, Severity::None, true, 3, 0),
            (Verdict::NoDecision, Severity::None, true, 0, 0),
        ];
        for (verdict, severity, coil, code, sev) in table {
            let writes = map.encode(&decision(verdict, severity, 4.25));
            assert_eq!(
                writes,
                vec![
                    Write::Coil {
                        address: 0,
                        value: coil
                    },
                    Write::Registers {
                        address: 0,
                        // seq 0x0001_0002_0003 -> low 32 bits 0x0002_0003, big word order.
                        words: vec![code, sev, score_hi, score_lo, 0x0002, 0x0003, 102, 0],
                    },
                ],
                "{verdict} / {severity}"
            );
        }
    }

    #[test]
    fn fail_safe_decisions_set_the_fail_safe_register() {
        let map = RegisterMap::default();
        let fail_safe =
            crate::FailSafeConfig::default().decision(Correlation::new("press-07", 5, 1), 2);
        let writes = map.encode(&fail_safe);
        let Write::Registers { words, .. } = &writes[1] else {
            panic!("{writes:?}")
        };
        assert_eq!(words[0], verdict_code(Verdict::Reject));
        assert_eq!(words[1], severity_code(Severity::Critical));
        assert_eq!(words[7], 1, "fail-safe register");
        assert_eq!(words[6], 0, "no model version");
        assert_eq!(
            writes[0],
            Write::Coil {
                address: 0,
                value: true
            }
        );
    }

    #[test]
    fn only_configured_addresses_are_written_and_seq_block_is_last() {
        let map = RegisterMap {
            reject_coil: None,
            severity_register: None,
            model_version_register: None,
            fail_safe_register: None,
            verdict_register: Some(100),
            score_registers: Some(10),
            seq_registers: Some(12),
            word_order: WordOrder::Little,
            ..RegisterMap::default()
        };
        let writes = map.encode(&decision(Verdict::Ok, Severity::None, 1.0));
        let one = 1.0_f32.to_bits();
        assert_eq!(
            writes,
            vec![
                Write::Registers {
                    address: 100,
                    words: vec![1]
                },
                // score (little word order) and seq merged into one block, written last.
                Write::Registers {
                    address: 10,
                    words: vec![one as u16, (one >> 16) as u16, 0x0003, 0x0002]
                },
            ]
        );
        assert_eq!(writes[1].describe(), "registers 10..13");
        assert_eq!(writes[0].describe(), "register 100");
    }

    #[test]
    fn nothing_configured_writes_nothing() {
        let map = RegisterMap {
            reject_coil: None,
            verdict_register: None,
            severity_register: None,
            score_registers: None,
            seq_registers: None,
            model_version_register: None,
            fail_safe_register: None,
            heartbeat_register: None,
            ..RegisterMap::default()
        };
        assert!(
            map.encode(&decision(Verdict::Reject, Severity::Critical, 1.0))
                .is_empty()
        );
        assert_eq!(map.encode_heartbeat(3), None);
        assert_eq!(
            RegisterMap::default().encode_heartbeat(7),
            Some(Write::Registers {
                address: 8,
                words: vec![7]
            })
        );
    }

    #[test]
    fn scaled_scores_round_saturate_and_mark_nan() {
        let order = WordOrder::Big;
        assert_eq!(
            score_words(1.234, ScoreFormat::ScaledI16, 100.0, order),
            vec![123]
        );
        assert_eq!(
            score_words(-1.235, ScoreFormat::ScaledI16, 100.0, order),
            vec![(-124_i16).cast_unsigned()]
        );
        assert_eq!(
            score_words(1e9, ScoreFormat::ScaledI16, 100.0, order),
            vec![32767]
        );
        assert_eq!(
            score_words(-1e9, ScoreFormat::ScaledI16, 100.0, order),
            vec![(-32767_i16).cast_unsigned()]
        );
        assert_eq!(
            score_words(f32::NAN, ScoreFormat::ScaledI16, 100.0, order),
            vec![0x8000]
        );
        assert_eq!(
            score_words(2.5, ScoreFormat::ScaledU16, 10.0, order),
            vec![25]
        );
        assert_eq!(
            score_words(-3.0, ScoreFormat::ScaledU16, 10.0, order),
            vec![0]
        );
        assert_eq!(
            score_words(1e9, ScoreFormat::ScaledU16, 10.0, order),
            vec![65534]
        );
        assert_eq!(
            score_words(f32::NAN, ScoreFormat::ScaledU16, 10.0, order),
            vec![0xFFFF]
        );
        let nan = score_words(f32::NAN, ScoreFormat::Float32, 1.0, order);
        assert!(f32::from_bits(join_u32([nan[0], nan[1]], order)).is_nan());
    }

    #[test]
    fn model_version_codes() {
        assert_eq!(model_version_code("press-anomaly@1.2.0"), 102);
        assert_eq!(model_version_code("v3.14"), 314);
        assert_eq!(model_version_code("m@655.35.0"), 65535);
        assert_eq!(model_version_code(""), 0);
        // Not semver (or minor >= 100, or too large): a stable hash.
        let hashed = model_version_code("press-anomaly@2024-06-01");
        assert_eq!(hashed, model_version_code("press-anomaly@2024-06-01"));
        assert_ne!(hashed, model_version_code("press-anomaly@2024-06-02"));
        assert_ne!(model_version_code("m@1.100.0"), 200);
        assert_ne!(model_version_code("m@656.0.0"), 0);
    }

    proptest! {
        #[test]
        fn u32_words_round_trip(value in any::<u32>(), little in any::<bool>()) {
            let order = if little { WordOrder::Little } else { WordOrder::Big };
            prop_assert_eq!(join_u32(split_u32(value, order), order), value);
        }

        #[test]
        fn float32_score_round_trips_bit_exact(score in any::<f32>(), little in any::<bool>()) {
            let order = if little { WordOrder::Little } else { WordOrder::Big };
            let words = score_words(score, ScoreFormat::Float32, 1.0, order);
            prop_assert_eq!(join_u32([words[0], words[1]], order), score.to_bits());
        }

        #[test]
        fn every_configured_register_is_written_exactly_once(
            verdict in prop::sample::select(Verdict::ALL),
            base in 0_u16..1000,
            gap in 0_u16..3,
        ) {
            // A map with the registers spread by `gap` (0 = contiguous).
            let at = |i: u16| Some(base + i * (2 + gap));
            let map = RegisterMap {
                verdict_register: at(0), severity_register: at(1), score_registers: at(2),
                seq_registers: at(3), model_version_register: at(4), fail_safe_register: at(5),
                ..RegisterMap::default()
            };
            let writes = map.encode(&decision(verdict, Severity::Warning, 0.5));
            let mut written: Vec<u16> = writes.iter().flat_map(|w| match w {
                Write::Registers { address, words } => (0..words.len() as u16).map(|i| address + i).collect(),
                Write::Coil { .. } => vec![],
            }).collect();
            written.sort_unstable();
            let mut expected: Vec<u16> = map.register_ranges().iter()
                .filter(|(name, ..)| *name != "heartbeat_register")
                .flat_map(|&(_, a, w)| a..a + w).collect();
            expected.sort_unstable();
            prop_assert_eq!(written, expected);
            // The block holding seq is the last write.
            let Some(Write::Registers { address, words }) = writes.last() else { panic!() };
            prop_assert!((*address..address + words.len() as u16).contains(&at(3).unwrap()));
        }
    }
}
