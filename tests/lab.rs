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

#[test]
fn optimal_d_matches_d_star_and_v_matches_jsd() {
    let o = opts("optimal_d");
    let s = run("optimal-d", &LabOptions { steps: Some(1200), ..o.clone() }).unwrap();
    eprintln!("{}", s.headline);
    let err = s.json["max_abs_err_bulk"].as_f64().unwrap();
    let gap = s.json["v_jsd_gap"].as_f64().unwrap();
    assert!(err < 0.1, "{}", s.headline);
    assert!(gap < 1e-6, "{}", s.headline);
    assert!(o.out.join("optimal_d.png").exists());
}
