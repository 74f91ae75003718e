//! `dcgan kernels`: every kernel compiled by NVRTC for one architecture with ptxas in verbose
//! mode (`--ptxas-options=-v` on the CUBIN compile), and ptxas's report parsed per kernel:
//! registers, shared memory, stack, spill stores / loads, barriers, ptxas time. Needs only
//! libnvrtc (no GPU).

use super::kernels::{Kernel, SOURCES};
use super::nvrtc::{self, ImageKind, NvrtcError};
use serde::Serialize;
use std::fmt::Write as _;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KernelStats {
    pub kernel: String,
    /// File under kernels/.
    pub file: String,
    pub arch: String,
    pub registers: u32,
    /// Static shared memory per block, bytes.
    pub shared_bytes: u32,
    pub stack_bytes: u32,
    pub spill_stores: u32,
    pub spill_loads: u32,
    pub barriers: u32,
    /// ptxas time for this kernel, ms.
    pub ptxas_ms: f64,
    /// NVRTC time for the whole file the kernel is in (front end + ptxas), ms.
    pub file_compile_ms: f64,
}

fn num_before(line: &str, suffix: &str) -> Option<u32> {
    let at = line.find(suffix)?;
    line[..at].split(|c: char| !c.is_ascii_digit()).rfind(|s| !s.is_empty())?.parse().ok()
}

/// Parses ptxas's verbose report (as NVRTC's program log carries it) into per-kernel stats.
pub fn parse_ptxas_log(log: &str, file: &str, arch: &str, file_ms: f64) -> Vec<KernelStats> {
    let mut out: Vec<KernelStats> = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let name = rest.split('\'').next().unwrap_or_default().to_string();
            out.push(KernelStats {
                kernel: name,
                file: file.to_string(),
                arch: arch.to_string(),
                registers: 0,
                shared_bytes: 0,
                stack_bytes: 0,
                spill_stores: 0,
                spill_loads: 0,
                barriers: 0,
                ptxas_ms: 0.0,
                file_compile_ms: file_ms,
            });
            continue;
        }
        let Some(k) = out.last_mut() else { continue };
        if line.contains("bytes stack frame") {
            k.stack_bytes = num_before(line, " bytes stack frame").unwrap_or(0);
            k.spill_stores = num_before(line, " bytes spill stores").unwrap_or(0);
            k.spill_loads = num_before(line, " bytes spill loads").unwrap_or(0);
        } else if line.contains("Used ") && line.contains(" registers") {
            k.registers = num_before(line, " registers").unwrap_or(0);
            k.barriers = num_before(line, " barriers").unwrap_or(0);
            k.shared_bytes = num_before(line, " bytes smem").unwrap_or(0);
        } else if let Some(t) = line.split("Compile time = ").nth(1) {
            k.ptxas_ms = t.trim().trim_end_matches("ms").trim().parse().unwrap_or(0.0);
        }
    }
    out
}

/// Compiles every kernel file for `arch` (`sm_80`, `sm_90`, ...) and returns ptxas's numbers
/// for every kernel of the table, in table order.
pub fn kernels_report(arch: &str) -> Result<Vec<KernelStats>, NvrtcError> {
    nvrtc::arch_number(arch)?;
    let mut all = Vec::new();
    for src in SOURCES {
        let opts = nvrtc::options(arch, ImageKind::Cubin, &["--ptxas-options=-v"])?;
        let c = nvrtc::compile_source(src.name, src.text, &opts, ImageKind::Cubin)?;
        all.extend(parse_ptxas_log(&c.log, src.name, arch, c.millis));
    }
    Kernel::ALL
        .iter()
        .map(|k| {
            all.iter().find(|s| s.kernel == k.name()).cloned().ok_or_else(|| {
                NvrtcError::Call(format!(
                    "ptxas reported nothing for kernel {} (kernels/{})",
                    k.name(),
                    k.source().name
                ))
            })
        })
        .collect()
}

/// The report as an aligned text table, with a closing line on spills.
pub fn render_table(stats: &[KernelStats]) -> String {
    let mut s = String::new();
    let arch = stats.first().map_or("", |k| k.arch.as_str());
    writeln!(s, "kernels compiled by NVRTC for {arch} (ptxas -v):").unwrap();
    writeln!(
        s,
        "{:<20} {:<15} {:>5} {:>10} {:>6} {:>10} {:>10} {:>5} {:>9} {:>9}",
        "kernel", "file", "regs", "smem (B)", "stack", "spill st", "spill ld", "bar", "ptxas ms", "file ms"
    )
    .unwrap();
    for k in stats {
        writeln!(
            s,
            "{:<20} {:<15} {:>5} {:>10} {:>6} {:>10} {:>10} {:>5} {:>9.2} {:>9.1}",
            k.kernel,
            k.file,
            k.registers,
            k.shared_bytes,
            k.stack_bytes,
            k.spill_stores,
            k.spill_loads,
            k.barriers,
            k.ptxas_ms,
            k.file_compile_ms
        )
        .unwrap();
    }
    let spilling: Vec<&str> =
        stats.iter().filter(|k| k.spill_stores > 0 || k.spill_loads > 0).map(|k| k.kernel.as_str()).collect();
    if spilling.is_empty() {
        writeln!(s, "{} kernels, none spills", stats.len()).unwrap();
    } else {
        writeln!(s, "{} kernels, spilling: {}", stats.len(), spilling.join(", ")).unwrap();
    }
    s
}

/// The report as a JSON array of objects (the fields of [`KernelStats`]).
pub fn render_json(stats: &[KernelStats]) -> String {
    serde_json::to_string_pretty(stats).expect("kernel stats serialise")
}
