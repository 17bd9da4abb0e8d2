//! The two drift statistics: population stability index (PSI) over the reference bins and the
//! one-sample Kolmogorov-Smirnov distance to the reference CDF.

use crate::reference::cdf_at;

/// Floor of a bin share in the PSI, so an empty bin gives a large but finite term.
pub const PSI_EPSILON: f64 = 1e-4;

/// Population stability index `sum_i (w_i - r_i) * ln(w_i / r_i)` of the window's bin shares
/// `window` against the reference's `reference` (same length), shares floored at
/// [`PSI_EPSILON`]. 0 for identical shares; about 0.1 is "some shift", 0.25 "a large one" by
/// the usual rule of thumb (forgeline calibrates its own threshold instead).
#[must_use]
pub fn psi(window: &[f64], reference: &[f64]) -> f64 {
    window
        .iter()
        .zip(reference)
        .map(|(&w, &r)| {
            let w = w.max(PSI_EPSILON);
            let r = r.max(PSI_EPSILON);
            (w - r) * (w / r).ln()
        })
        .sum()
}

/// Shares of `values` in the bins of `edges` (a value falls in bin = number of edges `<= x`),
/// written into `shares` (`edges.len() + 1` values). Empty input gives all zeros.
#[allow(clippy::cast_precision_loss)]
pub fn bin_shares(values: impl IntoIterator<Item = f64>, edges: &[f64], shares: &mut Vec<f64>) {
    shares.clear();
    shares.resize(edges.len() + 1, 0.0);
    let mut n = 0usize;
    for x in values {
        shares[crate::reference::bin_of(edges, x)] += 1.0;
        n += 1;
    }
    if n > 0 {
        for s in shares.iter_mut() {
            *s /= n as f64;
        }
    }
}

/// One-sample Kolmogorov-Smirnov distance `sup_x |F_window(x) - F_ref(x)|` between the
/// empirical CDF of `sorted` (ascending, finite) and the reference CDF given by its quantile
/// function `quantiles` (equally spaced probabilities, linear between them). Exact for ties and
/// for references with jumps (constant or discrete features): both sides are compared at every
/// window value and just below it. 0 for an empty window.
#[allow(clippy::cast_precision_loss)]
#[must_use]
pub fn ks(sorted: &[f64], quantiles: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    let nf = n as f64;
    let mut d: f64 = 0.0;
    let mut i = 0;
    while i < n {
        let v = sorted[i];
        let mut j = i;
        while j < n && sorted[j] == v {
            j += 1;
        }
        // F_window(v-) = i / n, F_window(v) = j / n.
        let below = (i as f64 / nf - cdf_at(quantiles, v, true)).abs();
        let at = (j as f64 / nf - cdf_at(quantiles, v, false)).abs();
        d = d.max(below).max(at);
        i = j;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn uniform_q() -> Vec<f64> {
        (0..=100).map(|k| f64::from(k) / 100.0).collect()
    }

    #[test]
    fn psi_matches_a_hand_computed_value() {
        // (0.25-0.5) ln(0.5) + (0.75-0.5) ln(1.5) = 0.173287 + 0.101366
        let v = psi(&[0.25, 0.75], &[0.5, 0.5]);
        assert!((v - 0.274_653_072_167_027).abs() < 1e-12, "{v}");
    }

    #[test]
    fn psi_of_an_empty_bin_is_finite_and_large() {
        let v = psi(&[0.0, 1.0], &[0.5, 0.5]);
        // (1e-4 - 0.5) ln(2e-4) + 0.5 ln 2
        let expected = (1e-4 - 0.5) * (2e-4f64).ln() + 0.5 * 2f64.ln();
        assert!((v - expected).abs() < 1e-12 && v > 4.0, "{v}");
    }

    #[test]
    fn ks_matches_a_hand_computed_value() {
        // Against U(0,1): largest gap just below 0.9 (F_w = 0.5, F = 0.9).
        let d = ks(&[0.1, 0.2, 0.9, 0.95], &uniform_q());
        assert!((d - 0.4).abs() < 1e-12, "{d}");
    }

    #[test]
    fn ks_handles_ties_and_a_constant_reference() {
        let constant = vec![1.0; 101];
        assert_eq!(ks(&[1.0; 50], &constant), 0.0);
        // 10 % of the window is 2.0 (e.g. a second impact counted): D = 0.1.
        let mut w = vec![1.0; 90];
        w.extend([2.0; 10]);
        assert!((ks(&w, &constant) - 0.1).abs() < 1e-12);
        // All below the constant: D = 1.
        assert_eq!(ks(&[0.0; 5], &constant), 1.0);
    }

    #[test]
    fn bin_shares_counts_edges_at_or_below() {
        let mut s = Vec::new();
        bin_shares([0.05, 0.1, 0.5, 0.95], &[0.1, 0.5], &mut s);
        assert_eq!(s, vec![0.25, 0.25, 0.5]);
    }

    proptest! {
        #[test]
        fn identical_distributions_give_zero_psi(
            shares in prop::collection::vec(0.0f64..1.0, 1..20)
        ) {
            let sum: f64 = shares.iter().sum();
            prop_assume!(sum > 1e-6);
            let p: Vec<f64> = shares.iter().map(|s| s / sum).collect();
            prop_assert!(psi(&p, &p).abs() < 1e-12);
        }

        #[test]
        fn psi_is_never_negative(
            a in prop::collection::vec(0.0f64..1.0, 5),
            b in prop::collection::vec(0.0f64..1.0, 5),
        ) {
            let (sa, sb): (f64, f64) = (a.iter().sum(), b.iter().sum());
            prop_assume!(sa > 1e-3 && sb > 1e-3);
            let pa: Vec<f64> = a.iter().map(|x| x / sa).collect();
            let pb: Vec<f64> = b.iter().map(|x| x / sb).collect();
            prop_assert!(psi(&pa, &pb) >= -1e-12);
        }

        #[test]
        fn a_window_equal_to_the_reference_sample_has_small_psi_and_ks(
            mut xs in prop::collection::vec(-100.0f64..100.0, 200..400)
        ) {
            // Reference built from the very sample the window holds: PSI ~ 0 and KS tiny.
            xs.sort_by(f64::total_cmp);
            let mut q = Vec::new();
            crate::reference::quantiles_of_sorted(&xs, &mut q);
            let edges: Vec<f64> = {
                let mut e: Vec<f64> = (1..10).map(|k| q[k * 10]).collect();
                e.dedup();
                e
            };
            let mut shares = Vec::new();
            bin_shares(xs.iter().copied(), &edges, &mut shares);
            let reference = shares.clone();
            prop_assert!(psi(&shares, &reference).abs() < 1e-12);
            // Linear interpolation between 101 quantiles: within ~1/100 + 1/n of the ECDF.
            prop_assert!(ks(&xs, &q) < 0.02, "ks {}", ks(&xs, &q));
        }
    }
}
