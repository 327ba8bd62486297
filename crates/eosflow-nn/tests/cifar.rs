//! The CIFAR-10 binary reader on small CIFAR-format files written here.

use eosflow_nn::data::{CIFAR10_RECORD, CIFAR10_TEST_FILE, CIFAR10_TRAIN_FILES, cifar10};
use std::path::Path;

/// A record whose pixels encode (file, record, channel) so the test can find
/// them again: red = 10·file + record mod 7, green = 100, blue = 200 + label.
fn record(file: usize, i: usize, label: u8) -> Vec<u8> {
    let mut r = vec![label];
    r.extend(std::iter::repeat_n(((10 * file + i) % 7) as u8, 1024));
    r.extend(std::iter::repeat_n(100u8, 1024));
    r.extend(std::iter::repeat_n(200 + label, 1024));
    r
}

/// Five training files of `n` records (labels cycling from `file`) and a test file of 4.
fn write_sample(dir: &Path, n: usize) {
    for (f, name) in CIFAR10_TRAIN_FILES.iter().enumerate() {
        let bytes: Vec<u8> = (0..n).flat_map(|i| record(f, i, ((f + i) % 10) as u8)).collect();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let test: Vec<u8> = (0..4).flat_map(|i| record(9, i, i as u8)).collect();
    std::fs::write(dir.join(CIFAR10_TEST_FILE), test).unwrap();
}

#[test]
fn reads_all_files_in_order_and_standardises_per_channel() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path(), 12);
    let s = cifar10(dir.path(), None).unwrap();
    assert_eq!(s.train.len(), 60);
    assert_eq!(s.test.len(), 4);
    assert_eq!(s.train.shape, vec![3, 32, 32]);
    // Labels in file order: file f, record i has label (f + i) mod 10.
    let expected: Vec<u32> = (0..5).flat_map(|f| (0..12).map(move |i| ((f + i) % 10) as u32)).collect();
    assert_eq!(s.train.labels, expected);
    assert_eq!(s.test.labels, vec![0, 1, 2, 3]);
    // Per-channel standardisation with training statistics: the training
    // red and blue channels end with mean 0 and std 1. The mean of n = 61,440
    // raw values is rounded by up to n·ε·|m|, which standardising divides by
    // the raw std s: tolerance n·ε·(1 + |m|/s), with m, s of the raw channel.
    let raw = |c: usize| -> Vec<f64> {
        (0..5)
            .flat_map(|f| (0..12).map(move |i| (f, i)))
            .flat_map(|(f, i)| {
                let v = match c {
                    0 => ((10 * f + i) % 7) as f64,
                    _ => (200 + (f + i) % 10) as f64,
                } / 255.0;
                std::iter::repeat_n(v, 1024)
            })
            .collect()
    };
    let st = s.train.channel_stats();
    for c in [0, 2] {
        let v = raw(c);
        let n = v.len() as f64;
        let m = v.iter().sum::<f64>() / n;
        let sd = (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n).sqrt();
        let tol = n * f64::EPSILON * (1.0 + m.abs() / sd);
        assert!(st[c].0.abs() < tol && (st[c].1 - 1.0).abs() < tol, "channel {c}: {:?}, tolerance {tol:e}", st[c]);
    }
    // Green is constant: only centred (not divided by a rounding-level std),
    // so it stays within the mean's rounding, n·ε, of 0.
    let ne = 61440.0 * f64::EPSILON;
    assert!(st[1].0.abs() < ne && st[1].1 < ne, "constant channel: {:?}", st[1]);
    // The blue plane keeps the label order: larger label, larger value.
    let blue = |k: usize| s.train.x[k * 3072 + 2048];
    assert!(blue(1) > blue(0), "record 1 (label 1) vs record 0 (label 0)");
}

#[test]
fn cifar_2k_takes_the_first_k_of_each_class_in_scan_order() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path(), 12);
    let s = cifar10(dir.path(), Some(3)).unwrap();
    assert_eq!(s.train.len(), 30);
    assert!(s.train.class_counts().iter().all(|&c| c == 3));
    // Scan order: file 0 gives labels 0..9 then 0, 1 (records 10, 11); the
    // third example of class 0 is record 8 of file 2 (label (2+8) mod 10 = 0).
    assert_eq!(&s.train.labels[..12], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
    let full = cifar10(dir.path(), None).unwrap();
    assert_eq!(&s.train.x[..12 * 3072], &full.train.x[..12 * 3072], "same standardisation as the full set");
    let e = cifar10(dir.path(), Some(7)).unwrap_err().to_string();
    assert!(e.contains("only 6 examples of class"), "{e}");
}

#[test]
fn missing_truncated_and_foreign_files_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    // No folder.
    let e = cifar10(&dir.path().join("nope"), None).unwrap_err().to_string();
    assert!(e.contains("does not exist") && e.contains("--data"), "{e}");
    // A missing batch names the file.
    write_sample(dir.path(), 2);
    std::fs::remove_file(dir.path().join("data_batch_3.bin")).unwrap();
    let e = cifar10(dir.path(), None).unwrap_err().to_string();
    assert!(e.contains("data_batch_3.bin") && e.contains("nothing is downloaded"), "{e}");
    // Truncated: one byte short of two records.
    write_sample(dir.path(), 2);
    let p = dir.path().join("data_batch_4.bin");
    let mut b = std::fs::read(&p).unwrap();
    b.pop();
    std::fs::write(&p, &b).unwrap();
    let e = cifar10(dir.path(), None).unwrap_err().to_string();
    assert!(e.contains("data_batch_4.bin") && e.contains(&(2 * CIFAR10_RECORD - 1).to_string()), "{e}");
    // A label beyond 9 (e.g. CIFAR-100's fine labels) names the record.
    write_sample(dir.path(), 2);
    let p = dir.path().join(CIFAR10_TEST_FILE);
    let mut b = std::fs::read(&p).unwrap();
    b[CIFAR10_RECORD] = 57;
    std::fs::write(&p, &b).unwrap();
    let e = cifar10(dir.path(), None).unwrap_err().to_string();
    assert!(e.contains("test_batch.bin") && e.contains("record 1") && e.contains("57"), "{e}");
    // An empty file.
    write_sample(dir.path(), 2);
    std::fs::write(dir.path().join("data_batch_1.bin"), b"").unwrap();
    assert!(cifar10(dir.path(), None).unwrap_err().to_string().contains("data_batch_1.bin"));
}
