//! The identities of scale-invariant losses on every network: for the SI
//! variants in all parameters, for the standard ResNet-20 on its declared
//! block (all conv kernels).
//!
//! With z the SI block: L(c·z) = L(z) for c > 0 implies (differentiating in
//! c and in w) ⟨∇_z L, z⟩ = 0, ∇_z L(cz) = ∇_z L(z)/c, H_zz(cz) = H_zz(z)/c²
//! and H_zz(z)·z = −∇_z L(z); hence ‖z‖²·λ1(H_zz) is unchanged by rescaling.

mod common;
use common::*;
use eosflow::problems::Problem;
use eosflow::sharpness::spherical_sharpness;
use eosflow::spectrum::LanczosParams;
use eosflow::{Hessian, Objective, ScaleInvariance};
use eosflow_nn::net::{self, Activation, VggItem};
use eosflow_nn::{NetParams, NetProblem};

fn problems() -> Vec<NetProblem> {
    let train = random_data(12, &[1, 8, 8], 3, 41);
    let test = random_data(4, &[1, 8, 8], 3, 42);
    let nets = [
        net::si_mlp(&[1, 8, 8], &[8, 6], 3, Activation::Swish, 1.353).unwrap(),
        net::si_mlp(&[1, 8, 8], &[8], 3, Activation::Relu, 1.353).unwrap(),
        net::si_vgg(&[VggItem::Conv(4), VggItem::Pool, VggItem::Conv(5), VggItem::Pool], 1.0, [1, 8, 8], 3, 1.353)
            .unwrap(),
        net::resnet20(true, 0.25, [1, 8, 8], 3, 1.353).unwrap(),
        net::resnet20(false, 0.25, [1, 8, 8], 3, 1.353).unwrap(),
    ];
    nets.into_iter()
        .map(|n| NetProblem::new(n, &train, &test, NetParams { ghost_batch: 6, ..Default::default() }).unwrap())
        .collect()
}

/// The SI block's indices (all of them for fully SI nets).
fn block(p: &NetProblem) -> Vec<usize> {
    match p.scale_invariance() {
        ScaleInvariance::All => (0..p.net().dim()).collect(),
        ScaleInvariance::Block(idx) => idx,
        ScaleInvariance::None => panic!("every network here declares a block"),
    }
}

fn pick(x: &[f64], idx: &[usize]) -> Vec<f64> {
    idx.iter().map(|&i| x[i]).collect()
}

/// w with its block scaled by c.
fn scale_block(w: &[f64], idx: &[usize], c: f64) -> Vec<f64> {
    let mut out = w.to_vec();
    for &i in idx {
        out[i] *= c;
    }
    out
}

// The networks are ≤ 25 layers deep and each layer's outputs are sums of at
// most ~600 products; forward and backward rounding is then ≲ 1e3·ε
// relative, which is the tolerance of the identities below (measured:
// ≤ 2e-14).
const TOL: f64 = 1e3 * f64::EPSILON;

#[test]
fn gradient_is_orthogonal_to_the_block_and_hessian_maps_it_to_minus_the_gradient() {
    for p in problems() {
        let name = &p.net().name;
        let idx = block(&p);
        let w = p.initial_point();
        let (_, g) = grad(&p, &w);
        let (gz, wz) = (pick(&g, &idx), pick(&w, &idx));
        let cos = dot(&gz, &wz) / (norm(&gz) * norm(&wz));
        assert!(cos.abs() < TOL, "{name}: ⟨∇_z L, z⟩/(‖∇_z L‖‖z‖) = {cos:e}");
        // H·(z, 0) restricted to the block equals −∇_z L.
        let dir = scale_block(&vec![0.0; w.len()], &idx, 0.0);
        let mut dir = dir;
        for &i in &idx {
            dir[i] = w[i];
        }
        let mut hz = vec![0.0; w.len()];
        p.hvp(&w, &dir, &mut hz);
        let lhs = pick(&hz, &idx);
        let minus_g: Vec<f64> = gz.iter().map(|x| -x).collect();
        let err = rel_err(&lhs, &minus_g);
        assert!(err < TOL, "{name}: ‖H_zz z + ∇_z L‖/‖∇_z L‖ = {err:e}");
        println!("{name}: cos {cos:.1e}, H z + g {err:.1e}");
    }
}

#[test]
fn loss_gradient_and_hessian_scale_as_homogeneous_functions() {
    for p in problems() {
        let name = &p.net().name;
        let idx = block(&p);
        let w = p.initial_point();
        let v = random_vec(w.len(), 7);
        let (l, g) = grad(&p, &w);
        let mut hv = vec![0.0; w.len()];
        p.hvp(&w, &v, &mut hv);
        for c in [0.3, 7.0] {
            let wc = scale_block(&w, &idx, c);
            let (lc, gc) = grad(&p, &wc);
            assert!((lc - l).abs() < TOL * l, "{name}: L(cz) = {lc} vs L(z) = {l}");
            // ∇_z L(cz)·c = ∇_z L(z); other coordinates unchanged.
            let gz_scaled: Vec<f64> = pick(&gc, &idx).iter().map(|x| x * c).collect();
            assert!(rel_err(&gz_scaled, &pick(&g, &idx)) < TOL, "{name}: c = {c}: gradient scaling");
            // v restricted to the block: H_zz(cz)·v_z·c² = H_zz(z)·v_z.
            let mut vz = vec![0.0; w.len()];
            for &i in &idx {
                vz[i] = v[i];
            }
            let (mut h1, mut hc) = (vec![0.0; w.len()], vec![0.0; w.len()]);
            p.hvp(&w, &vz, &mut h1);
            p.hvp(&wc, &vz, &mut hc);
            let hc_scaled: Vec<f64> = pick(&hc, &idx).iter().map(|x| x * c * c).collect();
            let err = rel_err(&hc_scaled, &pick(&h1, &idx));
            assert!(err < TOL, "{name}: c = {c}: ‖c²H_zz(cz)v − H_zz(z)v‖ rel. {err:e}");
        }
    }
}

#[test]
fn spherical_sharpness_is_unchanged_by_rescaling() {
    let lp = LanczosParams { tol: 1e-10, ..Default::default() };
    for p in problems() {
        let name = &p.net().name;
        let idx = block(&p);
        let w = p.initial_point();
        let s1 = spherical_sharpness(&p, &w, &lp, None).unwrap();
        let s2 = spherical_sharpness(&p, &scale_block(&w, &idx, 5.0), &lp, None).unwrap();
        assert!(s1.converged && s2.converged, "{name}: Lanczos did not converge");
        // Both are ‖z‖²λ1(H_zz) of the same operator up to rounding; Lanczos
        // resolves λ1 to its tolerance 1e-10 (Ritz values converge
        // quadratically in the residual, so far better in practice).
        let rel = (s1.spherical - s2.spherical).abs() / s1.spherical;
        println!("{name}: sharpness {} vs {} (rel. {rel:.1e})", s1.spherical, s2.spherical);
        assert!(rel < 1e-9, "{name}: ‖w‖²λ1 changed by {rel:e} under w → 5w");
    }
}
