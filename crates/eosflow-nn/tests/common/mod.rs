//! Small random datasets and helpers shared by the network tests.
#![allow(dead_code)]

use eosflow::Objective;
use eosflow_nn::Dataset;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// n examples of `shape` with N(0,1) entries and labels cycling through the
/// classes (so every class is present), from ChaCha8 seeded with `seed`.
pub fn random_data(n: usize, shape: &[usize], classes: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let size: usize = shape.iter().product();
    let x = (0..n * size).map(|_| StandardNormal.sample(&mut rng)).collect();
    let labels = (0..n).map(|i| ((i + rng.random_range(0..2)) % classes) as u32).collect();
    Dataset { x, labels, shape: shape.to_vec(), classes }
}

pub fn random_vec(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| StandardNormal.sample(&mut rng)).collect()
}

pub fn grad(obj: &dyn Objective, w: &[f64]) -> (f64, Vec<f64>) {
    let mut g = vec![0.0; obj.dim()];
    let l = obj.loss_grad(w, &mut g);
    (l, g)
}

pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// ‖a − b‖ / ‖b‖.
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    norm(&d) / norm(b)
}
