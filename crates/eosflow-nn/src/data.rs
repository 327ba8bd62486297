//! Datasets held in memory as f64 examples with class labels.
//!
//! The 8×8 handwritten digits ship inside the crate (see
//! `data/DIGITS_LICENSE.md`: UCI Optical Recognition of Handwritten Digits,
//! CC BY 4.0, the copy scikit-learn distributes), so the network experiments
//! run on real data with nothing downloaded.

use std::io::Read;

use crate::NnError;

/// Examples x (row-major, `n × prod(shape)`) with labels in `0..classes`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Flattened examples, one after another.
    pub x: Vec<f64>,
    /// Class of each example.
    pub labels: Vec<u32>,
    /// Shape of one example, e.g. `[1, 8, 8]` (channels, height, width).
    pub shape: Vec<usize>,
    /// Number of classes C.
    pub classes: usize,
}

impl Dataset {
    /// Number of examples n.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set has no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per example, prod(shape).
    pub fn example_size(&self) -> usize {
        self.shape.iter().product()
    }

    /// Examples per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.classes];
        for &y in &self.labels {
            c[y as usize] += 1;
        }
        c
    }

    /// The first `n` examples (ghost batches and the Hessian subset are
    /// prefixes of the fixed example order).
    pub fn prefix(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        Dataset {
            x: self.x[..n * self.example_size()].to_vec(),
            labels: self.labels[..n].to_vec(),
            shape: self.shape.clone(),
            classes: self.classes,
        }
    }

    /// Per-channel mean and standard deviation (population, over examples and
    /// pixels) of this set; channel = `shape[0]` for images, one channel for
    /// flat vectors. A spread within the mean's rounding (count·ε·|mean|) is
    /// reported as 0: the channel is constant.
    pub fn channel_stats(&self) -> Vec<(f64, f64)> {
        let (ch, per) = self.channels();
        let mut out = Vec::with_capacity(ch);
        for c in 0..ch {
            let vals = || self.x.chunks(self.example_size()).flat_map(move |e| e[c * per..(c + 1) * per].iter());
            let count = (self.len() * per) as f64;
            let mean = vals().sum::<f64>() / count;
            let var = vals().map(|v| (v - mean) * (v - mean)).sum::<f64>() / count;
            // The summed mean is off by up to count·ε·|mean|; a spread no
            // larger than that is a constant channel seen through rounding.
            let std = var.sqrt();
            out.push((mean, if std <= count * f64::EPSILON * mean.abs() { 0.0 } else { std }));
        }
        out
    }

    /// x ← (x − mean_c)/std_c per channel, with statistics of another set
    /// (the training set: test data never leaks into preprocessing). A
    /// channel with std 0 is only centred.
    pub fn standardize(&mut self, stats: &[(f64, f64)]) {
        let (ch, per) = self.channels();
        assert_eq!(stats.len(), ch, "one (mean, std) pair per channel");
        let size = self.example_size();
        for e in self.x.chunks_mut(size) {
            for (c, &(m, s)) in stats.iter().enumerate() {
                // A constant channel (std 0) is only centred.
                let s = if s > 0.0 { s } else { 1.0 };
                for v in &mut e[c * per..(c + 1) * per] {
                    *v = (*v - m) / s;
                }
            }
        }
    }

    fn channels(&self) -> (usize, usize) {
        if self.shape.len() == 3 { (self.shape[0], self.shape[1] * self.shape[2]) } else { (1, self.example_size()) }
    }
}

/// A training set and a test set.
#[derive(Clone, Debug)]
pub struct Split {
    /// Training examples.
    pub train: Dataset,
    /// Held-out examples.
    pub test: Dataset,
}

const DIGITS_GZ: &[u8] = include_bytes!("../data/digits.csv.gz");

/// The 1,797 8×8 digits (pixels 0..16, 10 classes) in file order, as
/// `[1, 8, 8]` images, unstandardised.
pub fn digits_raw() -> Result<Dataset, NnError> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(DIGITS_GZ).read_to_string(&mut text).map_err(NnError::DigitsEmbedded)?;
    let mut x = Vec::with_capacity(1797 * 64);
    let mut labels = Vec::with_capacity(1797);
    for (i, line) in text.lines().enumerate() {
        let fields = line.split(',').count();
        let vals: Vec<f64> = line.split(',').filter_map(|s| s.trim().parse::<f64>().ok()).collect();
        if vals.len() != 65 || fields != 65 {
            return Err(NnError::DigitsLine { line: i + 1, fields, numbers: vals.len() });
        }
        x.extend_from_slice(&vals[..64]);
        labels.push(vals[64] as u32);
    }
    Ok(Dataset { x, labels, shape: vec![1, 8, 8], classes: 10 })
}

/// The digits split as the paper builds CIFAR-10-2k (App. Q.1): scanning the
/// file in order, the first `train_per_class` examples of each class form the
/// training set (so classes are balanced, as eq. (53)'s L_min assumes) and all
/// others the test set, both in file order. Both are standardised with the
/// training set's pixel mean and standard deviation.
///
/// ```
/// let s = eosflow_nn::data::digits(100).unwrap();
/// assert_eq!(s.train.len(), 1000);
/// assert_eq!(s.test.len(), 797);
/// assert!(s.train.class_counts().iter().all(|&c| c == 100));
/// ```
pub fn digits(train_per_class: usize) -> Result<Split, NnError> {
    let all = digits_raw()?;
    let min_class = *all.class_counts().iter().min().unwrap();
    if train_per_class == 0 || train_per_class >= min_class {
        return Err(NnError::DigitsSplit { train_per_class, min_class });
    }
    let first = first_per_class_mask(&all, train_per_class);
    let mut train = subset(&all, |i| first[i]);
    let mut test = subset(&all, |i| !first[i]);
    let stats = train.channel_stats();
    train.standardize(&stats);
    test.standardize(&stats);
    Ok(Split { train, test })
}

fn empty_like(d: &Dataset) -> Dataset {
    Dataset { x: Vec::new(), labels: Vec::new(), shape: d.shape.clone(), classes: d.classes }
}

/// For each example of `d` in order: is it among the first `per_class` of
/// its class?
fn first_per_class_mask(d: &Dataset, per_class: usize) -> Vec<bool> {
    let mut taken = vec![0usize; d.classes];
    d.labels
        .iter()
        .map(|&y| {
            let t = &mut taken[y as usize];
            *t += 1;
            *t <= per_class
        })
        .collect()
}

/// The examples i of `d` with `keep(i)`, in order.
fn subset(d: &Dataset, keep: impl Fn(usize) -> bool) -> Dataset {
    let size = d.example_size();
    let mut out = empty_like(d);
    for (i, &y) in d.labels.iter().enumerate().filter(|(i, _)| keep(*i)) {
        out.x.extend_from_slice(&d.x[i * size..(i + 1) * size]);
        out.labels.push(y);
    }
    out
}

/// The files of the CIFAR-10 binary version, training batches first.
pub const CIFAR10_TRAIN_FILES: [&str; 5] =
    ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];
/// The CIFAR-10 test file.
pub const CIFAR10_TEST_FILE: &str = "test_batch.bin";
/// Bytes per record: one label byte, then 3×32×32 pixel bytes (the red
/// plane, the green plane, the blue plane, each row-major).
pub const CIFAR10_RECORD: usize = 1 + 3 * 32 * 32;

/// Reads one CIFAR-10 binary file, pixels scaled to [0, 1].
fn read_cifar_file(path: &std::path::Path) -> Result<Dataset, NnError> {
    let bytes = std::fs::read(path).map_err(|source| NnError::CifarRead { path: path.to_path_buf(), source })?;
    if bytes.is_empty() || !bytes.len().is_multiple_of(CIFAR10_RECORD) {
        return Err(NnError::CifarSize { path: path.to_path_buf(), bytes: bytes.len() });
    }
    let n = bytes.len() / CIFAR10_RECORD;
    let mut x = Vec::with_capacity(n * 3072);
    let mut labels = Vec::with_capacity(n);
    for (i, rec) in bytes.chunks_exact(CIFAR10_RECORD).enumerate() {
        if rec[0] > 9 {
            return Err(NnError::CifarLabel { path: path.to_path_buf(), record: i, label: rec[0] });
        }
        labels.push(rec[0] as u32);
        x.extend(rec[1..].iter().map(|&b| b as f64 / 255.0));
    }
    Ok(Dataset { x, labels, shape: vec![3, 32, 32], classes: 10 })
}

fn concat(parts: Vec<Dataset>) -> Dataset {
    let mut out = empty_like(&parts[0]);
    for p in parts {
        out.x.extend(p.x);
        out.labels.extend(p.labels);
    }
    out
}

/// The first `per_class` examples of each class, scanning `d` in order
/// (App. Q.1's CIFAR-10-2k is `per_class = 200`).
pub fn first_per_class(d: &Dataset, per_class: usize) -> Result<Dataset, NnError> {
    let first = first_per_class_mask(d, per_class);
    let out = subset(d, |i| first[i]);
    if let Some((c, &k)) = out.class_counts().iter().enumerate().find(|(_, k)| **k < per_class) {
        return Err(NnError::TooFewPerClass { class: c, have: k, want: per_class });
    }
    Ok(out)
}

/// CIFAR-10 from the binary files in `dir`: the five training batches in
/// order, then the test batch, as `[3, 32, 32]` images with pixels in
/// [0, 1] standardised per channel with the mean and standard deviation of
/// the full training set (no augmentation). With `per_class = Some(k)` the
/// training set is the first k images of each class in that order
/// (CIFAR-10-2k: k = 200, App. Q.1); the test set is always all of
/// `test_batch.bin`. Files may hold any whole number of records, so small
/// CIFAR-format samples work too.
pub fn cifar10(dir: &std::path::Path, per_class: Option<usize>) -> Result<Split, NnError> {
    if !dir.is_dir() {
        return Err(NnError::CifarDir { dir: dir.to_path_buf() });
    }
    let train = concat(CIFAR10_TRAIN_FILES.iter().map(|f| read_cifar_file(&dir.join(f))).collect::<Result<_, _>>()?);
    let mut test = read_cifar_file(&dir.join(CIFAR10_TEST_FILE))?;
    let stats = train.channel_stats();
    let mut train = match per_class {
        Some(0) => return Err(NnError::PerClassZero),
        Some(k) => first_per_class(&train, k)?,
        None => train,
    };
    train.standardize(&stats);
    test.standardize(&stats);
    Ok(Split { train, test })
}
