//! The embedded 8×8 digits and their deterministic split.

use eosflow_nn::data::{digits, digits_raw};

#[test]
fn raw_file_has_the_uci_counts() {
    let d = digits_raw().unwrap();
    assert_eq!(d.len(), 1797);
    assert_eq!(d.shape, vec![1, 8, 8]);
    // Class counts and the pixel total as numpy reads the same file.
    assert_eq!(d.class_counts(), vec![178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
    assert_eq!(&d.labels[..12], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
    assert_eq!(d.x.iter().sum::<f64>(), 561718.0);
    assert!(d.x.iter().all(|&v| (0.0..=16.0).contains(&v) && v.fract() == 0.0));
}

#[test]
fn split_is_balanced_deterministic_and_standardised() {
    let s = digits(20).unwrap();
    assert_eq!(s.train.len(), 200);
    assert_eq!(s.test.len(), 1597);
    assert!(s.train.class_counts().iter().all(|&c| c == 20));
    let raw = digits_raw().unwrap();
    let test_counts: Vec<usize> = raw.class_counts().iter().map(|c| c - 20).collect();
    assert_eq!(s.test.class_counts(), test_counts);
    // Same split on a second call, bit for bit.
    let again = digits(20).unwrap();
    assert_eq!(s.train, again.train);
    assert_eq!(s.test, again.test);
    // Training pixels are standardised to mean 0 and standard deviation 1
    // (sums of 12,800 O(1) values: rounding ≤ n·ε ≈ 3e-12).
    let st = s.train.channel_stats();
    assert!(st[0].0.abs() < 1e-12, "mean {}", st[0].0);
    assert!((st[0].1 - 1.0).abs() < 1e-12, "std {}", st[0].1);
    // Training examples are the file's rows, in order, standardised with
    // the raw training pixels' mean and std: undo that and compare.
    let mut taken = [0usize; 10];
    let mut rows = Vec::new();
    for (i, &y) in raw.labels.iter().enumerate() {
        if taken[y as usize] < 20 {
            taken[y as usize] += 1;
            rows.push(i);
        }
    }
    let pix: Vec<f64> = rows.iter().flat_map(|&i| raw.x[i * 64..(i + 1) * 64].iter().copied()).collect();
    let mean = pix.iter().sum::<f64>() / pix.len() as f64;
    let std = (pix.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / pix.len() as f64).sqrt();
    for (k, &i) in rows.iter().enumerate() {
        assert_eq!(s.train.labels[k], raw.labels[i]);
        for j in 0..64 {
            let back = s.train.x[k * 64 + j] * std + mean;
            assert!((back - raw.x[i * 64 + j]).abs() < 1e-12, "example {k} pixel {j}");
        }
    }
}

#[test]
fn bad_train_per_class_is_explained() {
    for bad in [0, 174, 500] {
        let e = digits(bad).unwrap_err().to_string();
        assert!(e.contains("train_per_class") && e.contains("174"), "{e}");
    }
}
