//! Tests of `nequil::lab::io`: `.npy`/`.npz`, MNIST IDX and safetensors, on small files written into a
//! temporary directory.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use nequil::lab::io::{self, NdArray};
use nequil::Error;

/// A fresh, empty directory for one test, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("nequil-io-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The message of an error that must be `Error::Io`.
fn io_msg<T: std::fmt::Debug>(r: nequil::Result<T>) -> String {
    match r {
        Err(Error::Io(m)) => m,
        other => panic!("expected Error::Io, got {other:?}"),
    }
}

/// Builds a `.npy` file by hand: `header` is the dict literal, padded as NumPy does.
fn npy(major: u8, header: &str, body: &[u8]) -> Vec<u8> {
    let prefix = if major == 1 { 10 } else { 12 };
    let mut h = header.to_string();
    while !(prefix + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[major, 0]);
    if major == 1 {
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(h.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(body);
    out
}

fn dict(descr: &str, fortran: bool, shape: &str) -> String {
    let f = if fortran { "True" } else { "False" };
    format!("{{'descr': '{descr}', 'fortran_order': {f}, 'shape': {shape}, }}")
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

// ---------------------------------------------------------------------------------------------
// .npy
// ---------------------------------------------------------------------------------------------

#[test]
fn npy_round_trip_is_exact() {
    let dir = TempDir::new("npy-rt");
    let specials = vec![
        0.1,
        -0.0,
        f64::MIN_POSITIVE / 3.0,
        f64::MAX,
        f64::NAN,
        f64::NEG_INFINITY,
    ];
    let arrays = [
        NdArray::new(vec![2, 3], specials).unwrap(),
        NdArray::new(vec![], vec![42.5]).unwrap(),
        NdArray::new(vec![0, 4], vec![]).unwrap(),
        NdArray::new(vec![5], (0..5).map(|i| i as f64 / 7.0).collect()).unwrap(),
        NdArray::new(vec![2, 1, 3, 1], (0..6).map(f64::from).collect()).unwrap(),
    ];
    for (i, a) in arrays.iter().enumerate() {
        let p = dir.path(&format!("a{i}.npy"));
        io::write_npy(&p, a).unwrap();
        let b = io::read_npy(&p).unwrap();
        assert_eq!(a.shape, b.shape);
        assert_eq!(bits(&a.data), bits(&b.data));
        // Header padded to a multiple of 64 bytes and terminated by a newline.
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        assert_eq!(bytes[10 + hlen - 1], b'\n');
        assert_eq!(bytes.len(), 10 + hlen + 8 * a.len());
    }
    let bytes = std::fs::read(dir.path("a3.npy")).unwrap();
    let header = String::from_utf8_lossy(&bytes[10..128]);
    assert!(header.starts_with("{'descr': '<f8', 'fortran_order': False, 'shape': (5,), }   "));
    // No temporary files are left behind.
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), arrays.len());
}

#[test]
fn npy_hand_built_dtypes() {
    // f4 big-endian
    let body: Vec<u8> = [1.5f32, -2.0, 3.25].iter().flat_map(|x| x.to_be_bytes()).collect();
    let a = io::parse_npy(&npy(1, &dict(">f4", false, "(3,)"), &body)).unwrap();
    assert_eq!(
        (a.shape.as_slice(), a.data.as_slice()),
        (&[3][..], &[1.5, -2.0, 3.25][..])
    );

    // i4 little-endian, 2-d
    let vals = [-1i32, 2, i32::MAX, i32::MIN];
    let body: Vec<u8> = vals.iter().flat_map(|x| x.to_le_bytes()).collect();
    let a = io::parse_npy(&npy(1, &dict("<i4", false, "(2, 2)"), &body)).unwrap();
    assert_eq!(a.shape, vec![2, 2]);
    assert_eq!(a.data, vals.iter().map(|&x| x as f64).collect::<Vec<_>>());

    // u1, bool
    let a = io::parse_npy(&npy(1, &dict("|u1", false, "(4,)"), &[0, 1, 200, 255])).unwrap();
    assert_eq!(a.data, vec![0.0, 1.0, 200.0, 255.0]);
    let a = io::parse_npy(&npy(1, &dict("|b1", false, "(3,)"), &[1, 0, 1])).unwrap();
    assert_eq!(a.data, vec![1.0, 0.0, 1.0]);

    // i1, big-endian i2 and i8, u2, u8, f2
    let a = io::parse_npy(&npy(1, &dict("|i1", false, "(2,)"), &[0xff, 0x7f])).unwrap();
    assert_eq!(a.data, vec![-1.0, 127.0]);
    let a = io::parse_npy(&npy(1, &dict(">i2", false, "(1,)"), &(-300i16).to_be_bytes())).unwrap();
    assert_eq!(a.data, vec![-300.0]);
    let a = io::parse_npy(&npy(1, &dict(">i8", false, "(1,)"), &(-5i64).to_be_bytes())).unwrap();
    assert_eq!(a.data, vec![-5.0]);
    let a = io::parse_npy(&npy(1, &dict("<u2", false, "(1,)"), &65535u16.to_le_bytes())).unwrap();
    assert_eq!(a.data, vec![65535.0]);
    let a = io::parse_npy(&npy(1, &dict(">u8", false, "(1,)"), &(1u64 << 40).to_be_bytes()));
    assert_eq!(a.unwrap().data, vec![(1u64 << 40) as f64]);
    let body = [0x00, 0x3c, 0x00, 0xc0]; // 1.0, -2.0 as little-endian binary16
    let a = io::parse_npy(&npy(1, &dict("<f2", false, "(2,)"), &body)).unwrap();
    assert_eq!(a.data, vec![1.0, -2.0]);

    // Scalar (0-d) array.
    let a = io::parse_npy(&npy(1, &dict("<f8", false, "()"), &7.0f64.to_le_bytes())).unwrap();
    assert_eq!((a.ndim(), a.data), (0, vec![7.0]));
}

#[test]
fn npy_fortran_order_is_converted_to_c_order() {
    // [[1, 2, 3], [4, 5, 6]] stored column by column.
    let body: Vec<u8> = [1.0f64, 4.0, 2.0, 5.0, 3.0, 6.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let a = io::parse_npy(&npy(1, &dict("<f8", true, "(2, 3)"), &body)).unwrap();
    assert_eq!(a.shape, vec![2, 3]);
    assert_eq!(a.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);

    // 3-d: element [i, j, k] = 100 i + 10 j + k, written with i fastest.
    let mut f = Vec::new();
    for k in 0..4 {
        for j in 0..3 {
            for i in 0..2i32 {
                f.extend_from_slice(&(100 * i + 10 * j + k).to_le_bytes());
            }
        }
    }
    let a = io::parse_npy(&npy(1, &dict("<i4", true, "(2, 3, 4)"), &f)).unwrap();
    let expect: Vec<f64> = (0..2)
        .flat_map(|i| (0..3).flat_map(move |j| (0..4).map(move |k| (100 * i + 10 * j + k) as f64)))
        .collect();
    assert_eq!(a.data, expect);
}

#[test]
fn npy_header_versions_2_and_3() {
    let body: Vec<u8> = [1.0f64, 2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    for major in [2, 3] {
        let a = io::parse_npy(&npy(major, &dict("<f8", false, "(2,)"), &body)).unwrap();
        assert_eq!(a.data, vec![1.0, 2.0], "version {major}.0");
    }
    // Keys in another order, double quotes, Python 2 long suffix.
    let h = "{\"shape\": (1L, 2L), \"fortran_order\": False, \"descr\": \"<f8\"}";
    let a = io::parse_npy(&npy(1, h, &body)).unwrap();
    assert_eq!(a.shape, vec![1, 2]);
}

#[test]
fn npy_errors_are_clear() {
    let dir = TempDir::new("npy-err");
    let good = npy(1, &dict("<f8", false, "(4,)"), &[0u8; 32]);

    let p = dir.path("bad.npy");
    std::fs::write(&p, b"PK\x03\x04 definitely not numpy").unwrap();
    let m = io_msg(io::read_npy(&p));
    assert!(m.contains("bad.npy") && m.contains("magic"), "{m}");

    let p = dir.path("short.npy");
    std::fs::write(&p, &good[..good.len() - 5]).unwrap();
    let m = io_msg(io::read_npy(&p));
    assert!(m.contains("short.npy") && m.contains("truncated"), "{m}");

    let m = io_msg(io::parse_npy(&good[..20]));
    assert!(m.contains("truncated"), "{m}");

    for descr in ["<c16", "|O", "<U5", "<M8[ns]", "|S3"] {
        let m = io_msg(io::parse_npy(&npy(1, &dict(descr, false, "(1,)"), &[0u8; 16])));
        assert!(m.contains("unsupported dtype") && m.contains(descr), "{m}");
    }
    let h = "{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (1,), }";
    assert!(io_msg(io::parse_npy(&npy(1, h, &[0u8; 8]))).contains("structured"));

    let mut v4 = good.clone();
    v4[6] = 4;
    assert!(io_msg(io::parse_npy(&v4)).contains("version 4.0"));

    let h = "{'descr': '<f8', 'shape': (1,), }";
    assert!(io_msg(io::parse_npy(&npy(1, h, &[0u8; 8]))).contains("fortran_order"));
    assert!(io_msg(io::parse_npy(&npy(1, "{'descr': '<f8", &[]))).contains("malformed"));
    let h = dict("<f8", false, "(4294967296, 4294967296, 4294967296)");
    assert!(io_msg(io::parse_npy(&npy(1, &h, &[]))).contains("overflows"));

    let m = io_msg(io::read_npy(&dir.path("missing.npy")));
    assert!(m.contains("missing.npy"), "{m}");

    // Invalid arguments are `Error::Invalid`.
    assert!(matches!(NdArray::new(vec![2, 2], vec![1.0]), Err(Error::Invalid(_))));
    let bad = NdArray {
        shape: vec![3],
        data: vec![1.0],
    };
    assert!(matches!(
        io::write_npy(&dir.path("x.npy"), &bad),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn non_finite_detection() {
    let a = NdArray::new(vec![4], vec![1.0, 2.0, f64::INFINITY, f64::NAN]).unwrap();
    assert_eq!(io::has_non_finite(&a), Some(2));
    let b = NdArray::new(vec![2], vec![1.0, -1e300]).unwrap();
    assert_eq!(io::has_non_finite(&b), None);
}

// ---------------------------------------------------------------------------------------------
// .npz
// ---------------------------------------------------------------------------------------------

#[test]
fn npz_stored_round_trip() {
    let dir = TempDir::new("npz");
    let w = NdArray::new(vec![2, 2], vec![1.0, -2.0, 3.5, f64::MIN_POSITIVE]).unwrap();
    let b = NdArray::new(vec![3], vec![0.25, 0.5, 0.75]).unwrap();
    let s = NdArray::new(vec![], vec![9.0]).unwrap();
    let p = dir.path("a.npz");
    io::write_npz(&p, &[("zeta", &w), ("alpha", &b), ("layers.0.weight", &s)]).unwrap();
    let back = io::read_npz(&p).unwrap();
    let keys: Vec<&str> = back.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["zeta", "alpha", "layers.0.weight"]);
    assert_eq!(back[0].1, w);
    assert_eq!(back[1].1, b);
    assert_eq!(back[2].1, s);

    let e = io::write_npz(&dir.path("d.npz"), &[("x", &b), ("x", &b)]);
    assert!(matches!(e, Err(Error::Invalid(m)) if m.contains("duplicate")));
}

#[test]
fn npz_deflated_members_are_read() {
    let dir = TempDir::new("npz-deflate");
    let a = NdArray::new(vec![10, 10], (0..100).map(|i| (i % 7) as f64).collect()).unwrap();
    let ints: Vec<u8> = (0..6i64).flat_map(|x| x.to_le_bytes()).collect();
    let p = dir.path("c.npz");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
    let deflate = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("a.npy", deflate).unwrap();
    zip.write_all(&io::npy_bytes(&a).unwrap()).unwrap();
    zip.start_file("sub/ints.npy", deflate).unwrap();
    zip.write_all(&npy(1, &dict("<i8", false, "(2, 3)"), &ints)).unwrap();
    zip.finish().unwrap();

    let back = io::read_npz(&p).unwrap();
    assert_eq!(back.len(), 2);
    assert_eq!(back[0], ("a".to_string(), a));
    assert_eq!(back[1].0, "sub/ints");
    assert_eq!(back[1].1.data, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    // Compression actually happened.
    assert!(std::fs::metadata(&p).unwrap().len() < 800);
}

#[test]
fn npz_errors_are_clear() {
    let dir = TempDir::new("npz-err");
    let p = dir.path("junk.npz");
    std::fs::write(&p, b"not a zip archive at all").unwrap();
    let m = io_msg(io::read_npz(&p));
    assert!(m.contains("junk.npz") && m.contains("zip"), "{m}");

    // A member that is not valid npy is named in the message.
    let p = dir.path("badmember.npz");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
    zip.start_file("w.npy", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(&npy(1, &dict("<c16", false, "(1,)"), &[0u8; 16]))
        .unwrap();
    zip.finish().unwrap();
    let m = io_msg(io::read_npz(&p));
    assert!(
        m.contains("badmember.npz") && m.contains("'w.npy'") && m.contains("<c16"),
        "{m}"
    );
}

// ---------------------------------------------------------------------------------------------
// IDX / MNIST
// ---------------------------------------------------------------------------------------------

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn idx_raw_and_gzip() {
    let dir = TempDir::new("idx");
    let data: Vec<u8> = (0..24).map(|i| (i * 10) as u8).collect();
    let p = dir.path("x-idx3-ubyte");
    io::write_idx_u8(&p, &[2, 3, 4], &data).unwrap();
    let a = io::read_idx(&p).unwrap();
    assert_eq!(a.shape, vec![2, 3, 4]);
    assert_eq!(a.data, data.iter().map(|&x| x as f64).collect::<Vec<_>>());

    let gz = dir.path("x-idx3-ubyte.gz");
    std::fs::write(&gz, gzip(&std::fs::read(&p).unwrap())).unwrap();
    assert_eq!(io::read_idx(&gz).unwrap(), a);

    // Other element types: i32 (0x0C) and f64 (0x0E), big-endian.
    let mut b = vec![0, 0, 0x0C, 1, 0, 0, 0, 2];
    b.extend_from_slice(&(-7i32).to_be_bytes());
    b.extend_from_slice(&70000i32.to_be_bytes());
    std::fs::write(dir.path("i"), &b).unwrap();
    assert_eq!(io::read_idx(&dir.path("i")).unwrap().data, vec![-7.0, 70000.0]);
    let mut b = vec![0, 0, 0x0E, 1, 0, 0, 0, 1];
    b.extend_from_slice(&0.1f64.to_be_bytes());
    std::fs::write(dir.path("f"), &b).unwrap();
    assert_eq!(io::read_idx(&dir.path("f")).unwrap().data, vec![0.1]);
}

#[test]
fn idx_errors_are_clear() {
    let dir = TempDir::new("idx-err");
    let p = dir.path("bad");
    std::fs::write(&p, [1, 2, 8, 1, 0, 0, 0, 1, 5]).unwrap();
    assert!(io_msg(io::read_idx(&p)).contains("magic"));
    std::fs::write(&p, [0, 0, 0x0A, 1, 0, 0, 0, 1, 5]).unwrap();
    assert!(io_msg(io::read_idx(&p)).contains("type code 0x0A"));
    std::fs::write(&p, [0, 0, 8, 2, 0, 0, 0, 3, 0, 0, 0, 3, 1, 2]).unwrap();
    let m = io_msg(io::read_idx(&p));
    assert!(m.contains("truncated") && m.contains("bad"), "{m}");
    std::fs::write(&p, [0, 0, 8, 3, 0, 0]).unwrap();
    assert!(io_msg(io::read_idx(&p)).contains("truncated"));
    let mut gz = gzip(&[0, 0, 8, 1, 0, 0, 0, 100]);
    gz.truncate(gz.len() - 6);
    std::fs::write(&p, &gz).unwrap();
    assert!(io_msg(io::read_idx(&p)).contains("gzip"));
    assert!(matches!(
        io::write_idx_u8(&p, &[2, 2], &[1, 2, 3]),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn mnist_loads_from_standard_names() {
    let dir = TempDir::new("mnist");
    let n = 5;
    let pixels: Vec<u8> = (0..n * 784).map(|i| (i % 256) as u8).collect();
    let labels: Vec<u8> = vec![3, 1, 4, 1, 5];
    // Training images gzip-compressed, labels raw.
    let tmp = dir.path("tmp");
    io::write_idx_u8(&tmp, &[n, 28, 28], &pixels).unwrap();
    std::fs::write(
        dir.path("train-images-idx3-ubyte.gz"),
        gzip(&std::fs::read(&tmp).unwrap()),
    )
    .unwrap();
    std::fs::remove_file(&tmp).unwrap();
    io::write_idx_u8(&dir.path("train-labels-idx1-ubyte"), &[n], &labels).unwrap();

    let (x, y) = io::load_mnist(&dir.0, true, None).unwrap();
    assert_eq!(x.shape, vec![n, 784]);
    assert_eq!(y, labels);
    assert_eq!(x.data[1], 1.0 / 255.0);
    assert_eq!(x.data[255], 1.0);
    assert!(x.data.iter().all(|&v| (0.0..=1.0).contains(&v)));

    let (x, y) = io::load_mnist(&dir.0, true, Some(2)).unwrap();
    assert_eq!((x.shape, y), (vec![2, 784], vec![3, 1]));
    let (x, _) = io::load_mnist(&dir.0, true, Some(100)).unwrap();
    assert_eq!(x.shape[0], n);

    // Test set missing: the message lists what was looked for.
    let m = io_msg(io::load_mnist(&dir.0, false, None));
    assert!(
        m.contains("t10k-images-idx3-ubyte") && m.contains("t10k-images-idx3-ubyte.gz"),
        "{m}"
    );

    // Mismatched counts.
    io::write_idx_u8(&dir.path("t10k-images-idx3-ubyte"), &[2, 28, 28], &pixels[..2 * 784]).unwrap();
    io::write_idx_u8(&dir.path("t10k-labels-idx1-ubyte"), &[3], &[1, 2, 3]).unwrap();
    assert!(io_msg(io::load_mnist(&dir.0, false, None)).contains("disagree"));
}

// ---------------------------------------------------------------------------------------------
// safetensors
// ---------------------------------------------------------------------------------------------

#[test]
fn safetensors_round_trip_is_bit_exact() {
    let dir = TempDir::new("st");
    let w: Vec<f64> = vec![0.1, -0.0, f64::MIN_POSITIVE / 3.0, f64::MAX, f64::NAN, 1e-300];
    let b: Vec<f64> = vec![1.0 / 3.0, -7.25];
    let s: Vec<f64> = vec![2.5];
    let tensors = vec![
        ("layers.0.weight".to_string(), vec![2, 3], w.as_slice()),
        ("layers.0.bias".to_string(), vec![2], b.as_slice()),
        ("scale".to_string(), vec![], s.as_slice()),
    ];
    let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    let p = dir.path("model.safetensors");
    io::write_safetensors(&p, &tensors, Some(meta.clone())).unwrap();
    // Overwriting goes through a rename and leaves no temporary file behind.
    io::write_safetensors(&p, &tensors, Some(meta.clone())).unwrap();
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 1);

    let (back, m) = io::read_safetensors_with_metadata(&p).unwrap();
    assert_eq!(m, meta);
    assert_eq!(back.len(), 3);
    for (name, shape, data) in &tensors {
        let (s2, d2) = &back[name];
        assert_eq!(s2, shape, "{name}");
        assert_eq!(bits(d2), bits(data), "{name}");
    }
    let again = io::read_safetensors(&p).unwrap();
    assert_eq!(again.keys().collect::<Vec<_>>(), back.keys().collect::<Vec<_>>());
    assert_eq!(bits(&again["layers.0.weight"].1), bits(&w));

    let e = io::write_safetensors(&p, &[("x".into(), vec![3], &b[..])], None);
    assert!(matches!(e, Err(Error::Invalid(m)) if m.contains("'x'")));
}

#[test]
fn safetensors_bytes_do_not_depend_on_hash_order() {
    // The metadata goes through a HashMap inside the safetensors crate; its order must not leak
    // into the file (runs are compared bit for bit across processes).
    let dir = TempDir::new("st-order");
    let w = [1.0, 2.0];
    let tensors = vec![("w".to_string(), vec![2], &w[..])];
    let meta: BTreeMap<String, String> = (0..8).map(|i| (format!("key{i}"), format!("value \"{i}\""))).collect();
    let p = dir.path("a.safetensors");
    io::write_safetensors(&p, &tensors, Some(meta.clone())).unwrap();
    let first = std::fs::read(&p).unwrap();
    for _ in 0..20 {
        io::write_safetensors(&p, &tensors, Some(meta.clone())).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), first);
    }
    assert_eq!(io::read_safetensors_with_metadata(&p).unwrap().1, meta);
}

#[test]
fn safetensors_reads_f32_f16_bf16() {
    use safetensors::tensor::{Dtype, TensorView};
    let dir = TempDir::new("st-f32");
    let f32s: Vec<u8> = [1.5f32, -0.1, 3.0e10, 0.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let f16s = [0x00u8, 0x3c, 0x00, 0xc0]; // 1.0, -2.0
    let bf16s = [0x80u8, 0x3f, 0x40, 0xc0]; // 1.0, -3.0
    let views = vec![
        ("fc.weight", TensorView::new(Dtype::F32, vec![2, 2], &f32s).unwrap()),
        ("h", TensorView::new(Dtype::F16, vec![2], &f16s).unwrap()),
        ("b", TensorView::new(Dtype::BF16, vec![2], &bf16s).unwrap()),
    ];
    let p = dir.path("f32.safetensors");
    std::fs::write(&p, safetensors::serialize(views, None).unwrap()).unwrap();
    let t = io::read_safetensors(&p).unwrap();
    assert_eq!(t["fc.weight"].0, vec![2, 2]);
    assert_eq!(t["fc.weight"].1, vec![1.5, -0.1f32 as f64, 3.0e10f32 as f64, 0.0]);
    assert_eq!(t["h"].1, vec![1.0, -2.0]);
    assert_eq!(t["b"].1, vec![1.0, -3.0]);
    assert!(io::read_safetensors_with_metadata(&p).unwrap().1.is_empty());
}

#[test]
fn safetensors_errors_are_clear() {
    use safetensors::tensor::{Dtype, TensorView};
    let dir = TempDir::new("st-err");
    let ints: Vec<u8> = [1i32, 2].iter().flat_map(|x| x.to_le_bytes()).collect();
    let p = dir.path("int.safetensors");
    let views = vec![("steps", TensorView::new(Dtype::I32, vec![2], &ints).unwrap())];
    std::fs::write(&p, safetensors::serialize(views, None).unwrap()).unwrap();
    let m = io_msg(io::read_safetensors(&p));
    assert!(
        m.contains("'steps'") && m.contains("I32") && m.contains("int.safetensors"),
        "{m}"
    );

    let p = dir.path("trunc.safetensors");
    let d = [1.0f64, 2.0];
    io::write_safetensors(&p, &[("a".into(), vec![2], &d[..])], None).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
    let m = io_msg(io::read_safetensors(&p));
    assert!(
        m.contains("trunc.safetensors") && m.contains("not a valid safetensors"),
        "{m}"
    );
    std::fs::write(&p, b"xx").unwrap();
    assert!(io_msg(io::read_safetensors(&p)).contains("not a valid safetensors"));
}

// ---------------------------------------------------------------------------------------------
// write_atomic
// ---------------------------------------------------------------------------------------------

#[test]
fn write_atomic_replaces_and_reports() {
    let dir = TempDir::new("atomic");
    let p = dir.path("f.bin");
    io::write_atomic(&p, b"first").unwrap();
    io::write_atomic(&p, b"second").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"second");
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 1);
    let m = io_msg(io::write_atomic(&dir.path("no/such/dir/f.bin"), b"x"));
    assert!(m.contains("f.bin"), "{m}");
    assert!(io::write_atomic(Path::new("/"), b"x").is_err());
}

/// Create-new: the first writer's file stays; of writers racing on one new path exactly one
/// creates it, the file is complete, and no temporary file is left.
#[test]
fn write_new_atomic_creates_once() {
    let dir = TempDir::new("atomic-new");
    let p = dir.path("f.toml");
    assert!(io::write_new_atomic(&p, b"first").unwrap());
    assert!(!io::write_new_atomic(&p, b"second").unwrap());
    assert_eq!(std::fs::read(&p).unwrap(), b"first");
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 1);
    for round in 0..20 {
        let p = dir.path(&format!("race-{round}.toml"));
        let barrier = std::sync::Barrier::new(8);
        let created: Vec<bool> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let (p, barrier) = (&p, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        io::write_new_atomic(p, format!("writer {i}").repeat(1000).as_bytes()).unwrap()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(created.iter().filter(|&&c| c).count(), 1, "round {round}: {created:?}");
        let winner = created.iter().position(|&c| c).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            format!("writer {winner}").repeat(1000),
            "round {round}"
        );
    }
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 21, "temporary files left");
    let m = io_msg(io::write_new_atomic(&dir.path("no/such/dir/f.toml"), b"x"));
    assert!(m.contains("f.toml"), "{m}");
}

// ---------------------------------------------------------------------------------------------
// Interoperability with NumPy, when available
// ---------------------------------------------------------------------------------------------

fn python_with_numpy() -> Option<String> {
    let py = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = std::process::Command::new(&py)
        .args(["-c", "import numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(py)
}

#[test]
fn numpy_interop() {
    let Some(py) = python_with_numpy() else {
        eprintln!("note: python3 with numpy not found; skipping the NumPy interoperability test");
        return;
    };
    let dir = TempDir::new("numpy");
    let a = NdArray::new(vec![2, 3], vec![0.1, -2.0, 3.5, 1e-300, -0.0, 6.0]).unwrap();
    io::write_npy(&dir.path("ours.npy"), &a).unwrap();
    io::write_npz(
        &dir.path("ours.npz"),
        &[("w", &a), ("s", &NdArray::new(vec![], vec![1.0]).unwrap())],
    )
    .unwrap();
    let script = r#"
import numpy as np, sys
d = sys.argv[1]
a = np.load(d + "/ours.npy")
assert a.dtype == np.float64 and a.shape == (2, 3), a
assert a.tolist() == [[0.1, -2.0, 3.5, 1e-300, -0.0, 6.0][i*3:(i+1)*3] for i in range(2)]
z = np.load(d + "/ours.npz")
assert list(z.keys()) == ["w", "s"] and (z["w"] == a).all() and z["s"].shape == ()
x = np.arange(24, dtype=">i2").reshape(2, 3, 4)
np.save(d + "/be.npy", x)
np.save(d + "/fort.npy", np.asfortranarray(np.arange(12.0).reshape(3, 4)).astype("<f4"))
np.save(d + "/bool.npy", np.array([True, False, True]))
np.save(d + "/f16.npy", np.array([0.5, -1.0], dtype=np.float16))
np.savez_compressed(d + "/comp.npz", first=np.eye(3), second=np.arange(5, dtype=np.uint8))
np.savez(d + "/plain.npz", np.ones((2, 2)), y=np.zeros(3, dtype=np.int64))
np.save(d + "/c.npy", np.array([1 + 2j]))
"#;
    let st = std::process::Command::new(&py)
        .args(["-c", script, dir.0.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success(), "numpy script failed");
    let be = io::read_npy(&dir.path("be.npy")).unwrap();
    assert_eq!((be.shape, be.data), (vec![2, 3, 4], (0..24).map(f64::from).collect()));
    let f = io::read_npy(&dir.path("fort.npy")).unwrap();
    assert_eq!((f.shape, f.data), (vec![3, 4], (0..12).map(f64::from).collect()));
    assert_eq!(io::read_npy(&dir.path("bool.npy")).unwrap().data, vec![1.0, 0.0, 1.0]);
    assert_eq!(io::read_npy(&dir.path("f16.npy")).unwrap().data, vec![0.5, -1.0]);
    let c = io::read_npz(&dir.path("comp.npz")).unwrap();
    assert_eq!(c[0].0, "first");
    assert_eq!(c[0].1.data, vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
    assert_eq!(
        (c[1].0.as_str(), c[1].1.data.as_slice()),
        ("second", &[0.0, 1.0, 2.0, 3.0, 4.0][..])
    );
    let p = io::read_npz(&dir.path("plain.npz")).unwrap();
    let mut keys: Vec<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable(); // NumPy puts keyword arrays first; the order is its business
    assert_eq!(keys, ["arr_0", "y"]);
    assert!(io_msg(io::read_npy(&dir.path("c.npy"))).contains("<c16"));
}
