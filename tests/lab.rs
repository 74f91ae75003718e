//! The GAN internals lab: each experiment at a fixed seed, checking its headline number.

use dcgan::lab::{GenLoss, LabOptions, run};

fn opts(name: &str) -> LabOptions {
    let out = std::env::temp_dir().join(format!("dcgan_lab_test_{name}_{}", std::process::id()));
    LabOptions { out, ..LabOptions::default() }
}

#[test]
fn shift1d_theta_reaches_mu() {
    let o = opts("shift1d");
    let s = run("shift1d", &o).unwrap();
    eprintln!("{}", s.headline);
    let err = s.json["abs_error"].as_f64().unwrap();
    assert!(err < 0.1, "{}", s.headline);
    assert!(o.out.join("shift1d_theta.png").exists());
    assert!(o.out.join("shift1d.csv").exists());
    let _ = GenLoss::Minimax;
}

#[test]
fn unknown_experiment_is_an_error_listing_the_known_ones() {
    let e = run("nope", &opts("nope")).unwrap_err().to_string();
    assert!(e.contains("nope") && e.contains("shift1d") && e.contains("ring"), "{e}");
}
