//! The real data embedded for fig5-deep-linear: scikit-learn's handwritten digits.

use nequil::lab::io;
use nequil_paper::experiments::{digits_dataset, DIGITS_NPZ};

/// The digits embedded in the crate (fig5-deep-linear's real data): the same bytes as the
/// committed `data/digits.npz`, the shapes and dtypes of the export script, labels 0..9 with the
/// class counts the UCI data set documents for its test set, and the regression data set built
/// from them (x = pixels/16, one-hot y) carrying exactly the file's pixel sum.
#[test]
fn digits_embedded_match_the_committed_file() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/digits.npz");
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(DIGITS_NPZ, &on_disk[..], "the binary embeds data/digits.npz");
    // Read through the file-path reader (not the in-memory one the experiment uses).
    let members = io::read_npz(&path).unwrap();
    let names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["images", "labels"]);
    let (images, labels) = (&members[0].1, &members[1].1);
    assert_eq!(images.shape, [1797, 64]);
    assert_eq!(labels.shape, [1797]);
    assert!(images.data.iter().all(|p| p.fract() == 0.0 && (0.0..=16.0).contains(p)));
    let mut counts = [0usize; 10];
    for &l in &labels.data {
        assert!(l.fract() == 0.0 && (0.0..=9.0).contains(&l), "label {l}");
        counts[l as usize] += 1;
    }
    // The UCI description of optdigits.tes ("No of examples in testing set").
    assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
    let pixel_sum: f64 = images.data.iter().sum();
    let d = digits_dataset().unwrap();
    assert_eq!((d.n, d.d_x, d.d_y), (1797, 64, 10));
    // x = pixels/16: division by a power of two is exact, and the sum of at most 115 008 values
    // that are multiples of 1/16 below 2^40 is exact in f64, so the sums agree exactly.
    let x_sum: f64 = d.x.iter().sum();
    assert_eq!(x_sum * 16.0, pixel_sum);
    for i in 0..d.n {
        let row = &d.y[i * 10..(i + 1) * 10];
        assert_eq!(row.iter().sum::<f64>(), 1.0);
        assert_eq!(row[labels.data[i] as usize], 1.0);
    }
    // The in-memory reader gives exactly what the file reader gives.
    let embedded = io::parse_npz(DIGITS_NPZ, "embedded").unwrap();
    assert_eq!(embedded, members);
    assert!(io::parse_npz(&DIGITS_NPZ[..100], "truncated digits")
        .unwrap_err()
        .to_string()
        .contains("truncated digits"));
}
