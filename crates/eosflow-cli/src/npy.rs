//! `.npy` input and output of flat float64 vectors.

use anyhow::{Context, Result, bail};
use npyz::WriterBuilder;
use std::path::Path;

/// Refuses a header whose shape promises more data than the file holds,
/// before anything is allocated for it.
fn check_size(path: &Path, shape: &[u64], elem: u64, file_len: usize) -> Result<()> {
    let total = shape.iter().try_fold(elem, |a, &d| a.checked_mul(d));
    match total {
        Some(t) if t <= file_len as u64 => Ok(()),
        _ => bail!(
            "{}: truncated or corrupt (the header promises shape {:?}, more than the file's {file_len} bytes)",
            path.display(),
            shape
        ),
    }
}

fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read .npy file {}", path.display()))
}

fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<npyz::NpyFile<&'a [u8]>> {
    npyz::NpyFile::new(bytes)
        .with_context(|| format!("{} is not a valid .npy file (bad magic string or header)", path.display()))
}

fn require_float64(path: &Path, npy: &npyz::NpyFile<&[u8]>, fix: &str) -> Result<()> {
    let ok = matches!(npy.dtype(), npyz::DType::Plain(ref t)
        if t.type_char() == npyz::TypeChar::Float && t.size_field() == 8);
    if !ok {
        bail!("{}: dtype is {:?}, expected float64; save it with {fix}", path.display(), npy.dtype().descr());
    }
    Ok(())
}

/// Reads a 1-D float64 array. `expected` (if given) is the required length.
pub fn read_vector(path: &Path, expected: Option<usize>) -> Result<Vec<f64>> {
    read_vector_of(path, expected.map(|e| (e, format!("the problem has {e} parameters"))))
}

/// [`read_vector`] with the expected length and what it is, for the
/// message: `(20, "x_npy has 20 rows, one target each")`.
pub fn read_vector_of(path: &Path, expected: Option<(usize, String)>) -> Result<Vec<f64>> {
    let bytes = read_bytes(path)?;
    let npy = parse(path, &bytes)?;
    let shape = npy.shape().to_vec();
    require_float64(path, &npy, "np.save(path, w.astype(np.float64).ravel())")?;
    if shape.len() != 1 {
        bail!("{}: shape {:?}, expected a 1-D array; save the flat vector with w.ravel()", path.display(), shape);
    }
    let n = shape[0] as usize;
    check_size(path, &shape, 8, bytes.len())?;
    if let Some((e, what)) = expected
        && n != e
    {
        bail!("{}: has {n} entries, but {what}", path.display());
    }
    let v: Vec<f64> = npy.into_vec().with_context(|| {
        format!("{}: truncated or corrupt data (header promises {n} float64 values)", path.display())
    })?;
    Ok(v)
}

/// Reads a 2-D float64 array as (rows, cols, row-major values); Fortran-order
/// files are transposed into row-major.
pub fn read_matrix(path: &Path) -> Result<(usize, usize, Vec<f64>)> {
    let bytes = read_bytes(path)?;
    let npy = parse(path, &bytes)?;
    let shape = npy.shape().to_vec();
    require_float64(path, &npy, "np.save(path, x.astype(np.float64))")?;
    if shape.len() != 2 {
        bail!("{}: shape {:?}, expected a 2-D array (rows = data points)", path.display(), shape);
    }
    let (r, c) = (shape[0] as usize, shape[1] as usize);
    check_size(path, &shape, 8, bytes.len())?;
    let fortran = npy.order() == npyz::Order::Fortran;
    let v: Vec<f64> = npy.into_vec().with_context(|| {
        format!("{}: truncated or corrupt data (header promises {r}×{c} float64 values)", path.display())
    })?;
    if fortran {
        let mut t = vec![0.0; r * c];
        for j in 0..c {
            for i in 0..r {
                t[i * c + j] = v[j * r + i];
            }
        }
        return Ok((r, c, t));
    }
    Ok((r, c, v))
}

/// Reads an N×2 integer array of matrix positions (int64, int32, uint64 or
/// uint32).
pub fn read_positions(path: &Path) -> Result<Vec<(usize, usize)>> {
    let bytes = read_bytes(path)?;
    let npy = parse(path, &bytes)?;
    let shape = npy.shape().to_vec();
    if shape.len() != 2 || shape[1] != 2 {
        bail!("{}: shape {:?}, expected N×2 (row, column) positions", path.display(), shape);
    }
    let fortran = npy.order() == npyz::Order::Fortran;
    let (tc, size) = match npy.dtype() {
        npyz::DType::Plain(t) => (t.type_char(), t.size_field()),
        other => bail!("{}: dtype {:?}, expected an integer array", path.display(), other.descr()),
    };
    let n = shape[0] as usize;
    check_size(path, &shape, size, bytes.len())?;
    let err = || format!("{}: truncated or corrupt data (header promises {n}×2 integers)", path.display());
    let v: Vec<i64> = match (tc, size) {
        (npyz::TypeChar::Int, 8) => npy.into_vec::<i64>().with_context(err)?,
        (npyz::TypeChar::Int, 4) => npy.into_vec::<i32>().with_context(err)?.into_iter().map(i64::from).collect(),
        (npyz::TypeChar::Uint, 8) => {
            npy.into_vec::<u64>().with_context(err)?.into_iter().map(|x| i64::try_from(x).unwrap_or(i64::MAX)).collect()
        }
        (npyz::TypeChar::Uint, 4) => npy.into_vec::<u32>().with_context(err)?.into_iter().map(i64::from).collect(),
        _ => bail!("{}: dtype {:?}, expected int64/int32 positions", path.display(), npy.dtype().descr()),
    };
    let at = |i: usize, c: usize| if fortran { v[c * n + i] } else { v[i * 2 + c] };
    (0..n)
        .map(|i| {
            let (r, c) = (at(i, 0), at(i, 1));
            if r < 0 || c < 0 {
                bail!("{}: row {i} has a negative index ({r}, {c})", path.display());
            }
            Ok((r as usize, c as usize))
        })
        .collect()
}

/// Encodes N×2 positions as an int64 `.npy`.
pub fn encode_positions(p: &[(usize, usize)]) -> Result<Vec<u8>> {
    let mut cur = std::io::Cursor::new(Vec::new());
    {
        let mut w =
            npyz::WriteOptions::new().default_dtype().shape(&[p.len() as u64, 2]).writer(&mut cur).begin_nd()?;
        w.extend(p.iter().flat_map(|&(i, j)| [i as i64, j as i64]))?;
        w.finish()?;
    }
    Ok(cur.into_inner())
}

/// Encodes class labels as a 1-D int64 `.npy`.
pub fn encode_labels(y: &[u32]) -> Result<Vec<u8>> {
    let mut cur = std::io::Cursor::new(Vec::new());
    {
        let mut w = npyz::WriteOptions::new().default_dtype().shape(&[y.len() as u64]).writer(&mut cur).begin_nd()?;
        w.extend(y.iter().map(|&v| v as i64))?;
        w.finish()?;
    }
    Ok(cur.into_inner())
}

/// Encodes a row-major rows×cols float64 matrix as `.npy` bytes.
pub fn encode_matrix(rows: usize, cols: usize, v: &[f64]) -> Result<Vec<u8>> {
    assert_eq!(v.len(), rows * cols);
    let mut cur = std::io::Cursor::new(Vec::new());
    {
        let mut w =
            npyz::WriteOptions::new().default_dtype().shape(&[rows as u64, cols as u64]).writer(&mut cur).begin_nd()?;
        w.extend(v.iter().copied())?;
        w.finish()?;
    }
    Ok(cur.into_inner())
}

/// Encodes a 1-D float64 array as `.npy` bytes.
pub fn encode_vector(v: &[f64]) -> Result<Vec<u8>> {
    let mut cur = std::io::Cursor::new(Vec::new());
    {
        let mut w = npyz::WriteOptions::new().default_dtype().shape(&[v.len() as u64]).writer(&mut cur).begin_nd()?;
        w.extend(v.iter().copied())?;
        w.finish()?;
    }
    Ok(cur.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.npy");
        let v = vec![0.1, -2.0, 1e-300, 3.5];
        std::fs::write(&p, encode_vector(&v).unwrap()).unwrap();
        assert_eq!(read_vector(&p, Some(4)).unwrap(), v);
        let e = read_vector(&p, Some(3)).unwrap_err().to_string();
        assert!(e.contains("has 4 entries, but the problem has 3"), "{e}");
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
        let e = format!("{:#}", read_vector(&p, None).unwrap_err());
        assert!(e.contains("truncated"), "{e}");
        // A header promising 10^14 values in a 150-byte file: refused before
        // any allocation (the padding absorbs the longer shape text).
        let good = encode_vector(&[1.0, 2.0, 3.0]).unwrap();
        let text = String::from_utf8_lossy(&good[10..]).into_owned();
        let (a, b) = (text.find("(3").unwrap(), text.find(')').unwrap());
        let shape = &text[a..=b];
        let longer = "(100000000000000,)";
        let huge = text.replacen(shape, longer, 1).replacen(&" ".repeat(longer.len() - shape.len()), "", 1);
        let mut bad = good[..10].to_vec();
        bad.extend(huge.as_bytes());
        std::fs::write(&p, &bad).unwrap();
        let e = format!("{:#}", read_vector(&p, None).unwrap_err());
        assert!(e.contains("more than the file"), "{e}");
        std::fs::write(&p, b"not numpy at all").unwrap();
        let e = format!("{:#}", read_vector(&p, None).unwrap_err());
        assert!(e.contains("not a valid .npy"), "{e}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Arbitrary bytes, or a valid file cut and corrupted anywhere: the
        /// readers return an error or a value, never panic.
        #[test]
        fn readers_never_panic(raw in proptest::collection::vec(0u8..=255, 0..300), cut in 0usize..400, pos in 0usize..400, byte in 0u8..=255) {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("f.npy");
            std::fs::write(&p, &raw).unwrap();
            let _ = read_vector(&p, None);
            let _ = read_matrix(&p);
            let _ = read_positions(&p);
            for valid in [encode_vector(&[1.0, 2.0, 3.0]).unwrap(), encode_matrix(2, 2, &[1.0, 2.0, 3.0, 4.0]).unwrap(),
                          encode_positions(&[(0, 1), (2, 3)]).unwrap()] {
                let mut b = valid.clone();
                let i = pos % b.len();
                b[i] = byte;
                b.truncate(cut.min(b.len()));
                std::fs::write(&p, &b).unwrap();
                let _ = read_vector(&p, Some(3));
                let _ = read_matrix(&p);
                let _ = read_positions(&p);
            }
        }
    }
}
