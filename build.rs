//! Scans kernels/*.cu and generates, in OUT_DIR:
//! - `kernels.rs`: the kernel table (sources embedded, entry points, parameter lists, file and
//!   line), one `Kernel` variant per `extern "C" __global__` entry point, a typed launcher
//!   per kernel (so naming a missing kernel, or passing the wrong arguments, does not
//!   compile), and the `#[repr(C)]` mirrors of the `...Args` parameter structs of common.cuh;
//! - `emu_<file>.cpp`: the emulator trampolines, which unpack each kernel's by-value
//!   arguments from `void**` (the cuLaunchKernel convention) and run the grid;
//! - `libdcgan_emu.a`: kernels/*.cu compiled as C++20 under kernels/emu/shim.h (crate `cc`).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

struct Param {
    /// C type without `__restrict__`, e.g. `const float*`.
    c_type: String,
    name: String,
    /// Declaration as written (minus `__restrict__`), for the table.
    decl: String,
}

struct KernelDecl {
    name: String,
    file: usize,
    line: usize,
    params: Vec<Param>,
}

struct ArgsStruct {
    name: String,
    fields: Vec<(String, String)>, // (rust type, name)
}

fn camel(s: &str) -> String {
    s.split('_')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && i + 1 < b.len() && b[i + 1] == b'/' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && i + 1 < b.len() && b[i + 1] == b'*' {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                if b[i] == b'\n' {
                    out.push('\n');
                }
                i += 1;
            }
            i += 2;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn c_scalar_to_rust(t: &str) -> Option<&'static str> {
    match t {
        "int" => Some("i32"),
        "unsigned" | "unsigned int" => Some("u32"),
        "float" => Some("f32"),
        "long long" => Some("i64"),
        "unsigned long long" => Some("u64"),
        _ => None,
    }
}

fn parse_structs(src: &str, out: &mut Vec<ArgsStruct>) {
    let src = strip_comments(src);
    let mut rest = src.as_str();
    while let Some(pos) = rest.find("struct ") {
        rest = &rest[pos + 7..];
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let after = rest[name.len()..].trim_start();
        if !name.ends_with("Args") || !after.starts_with('{') {
            continue;
        }
        let body_start = rest.find('{').unwrap() + 1;
        let body_end = rest[body_start..].find('}').unwrap() + body_start;
        let body = &rest[body_start..body_end];
        let mut fields = Vec::new();
        for stmt in body.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let words: Vec<&str> = stmt.split_whitespace().collect();
            // `type a, b, c` or `type a`
            let joined = words.join(" ");
            let first_name_at = joined
                .rfind(|c: char| c.is_whitespace())
                .map(|_| {
                    // the type is every leading word that is a type keyword
                    let mut n = 0;
                    for w in &words {
                        if matches!(*w, "int" | "unsigned" | "float" | "long") {
                            n += 1;
                        } else {
                            break;
                        }
                    }
                    n
                })
                .unwrap();
            let ty = words[..first_name_at].join(" ");
            let rust = c_scalar_to_rust(&ty).unwrap_or_else(|| {
                panic!("kernels: struct {name}: unsupported field type `{ty}` in `{stmt}`")
            });
            for n in words[first_name_at..].join(" ").split(',') {
                fields.push((rust.to_string(), n.trim().to_string()));
            }
        }
        out.push(ArgsStruct { name, fields });
        rest = &rest[body_end..];
    }
}

fn parse_kernels(src: &str, file: usize, file_name: &str, out: &mut Vec<KernelDecl>) {
    const MARK: &str = "extern \"C\" __global__ void";
    let clean = strip_comments(src);
    let mut from = 0;
    while let Some(pos) = clean[from..].find(MARK) {
        let start = from + pos;
        let line = clean[..start].matches('\n').count() + 1;
        let mut rest = clean[start + MARK.len()..].trim_start();
        if let Some(r) = rest.strip_prefix("__launch_bounds__") {
            let close = r.find(')').expect("__launch_bounds__(...)");
            rest = r[close + 1..].trim_start();
        }
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        assert!(!name.is_empty(), "kernels/{file_name}:{line}: kernel without a name");
        let open = rest.find('(').unwrap();
        let close = rest.find(')').unwrap();
        let list = &rest[open + 1..close];
        let mut params = Vec::new();
        for p in list.split(',').map(|p| p.split_whitespace().collect::<Vec<_>>().join(" ")) {
            if p.is_empty() {
                continue;
            }
            let decl = p.replace(" __restrict__", "").replace("__restrict__ ", "");
            let name_start = decl.rfind(|c: char| !(c.is_alphanumeric() || c == '_')).map_or(0, |i| i + 1);
            let pname = decl[name_start..].to_string();
            let c_type = decl[..name_start].trim().replace(" *", "*");
            params.push(Param { c_type, name: pname, decl: decl.clone() });
        }
        out.push(KernelDecl { name, file, line, params });
        from = start + MARK.len();
    }
}

fn rust_type(c_type: &str, structs: &[ArgsStruct], kernel: &str) -> String {
    if c_type.ends_with('*') {
        return "DevPtr".into();
    }
    if let Some(r) = c_scalar_to_rust(c_type) {
        return r.into();
    }
    if structs.iter().any(|s| s.name == c_type) {
        return c_type.into();
    }
    panic!(
        "kernels: {kernel}: unsupported parameter type `{c_type}` (pointers, int/unsigned/float, or a ...Args struct)"
    )
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let kdir = root.join("kernels");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=kernels");

    let mut files: Vec<PathBuf> = fs::read_dir(&kdir)
        .expect("kernels/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cu"))
        .collect();
    files.sort();
    let mut headers: Vec<PathBuf> = fs::read_dir(&kdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cuh"))
        .collect();
    headers.sort();

    let mut structs = Vec::new();
    for h in headers.iter().chain(&files) {
        parse_structs(&fs::read_to_string(h).unwrap(), &mut structs);
    }
    let mut kernels = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let name = f.file_name().unwrap().to_str().unwrap();
        parse_kernels(&fs::read_to_string(f).unwrap(), i, name, &mut kernels);
    }
    {
        let mut seen = std::collections::HashSet::new();
        for k in &kernels {
            assert!(seen.insert(&k.name), "kernels: `{}` is defined twice", k.name);
        }
    }

    // ---- kernels.rs
    let mut rs = String::new();
    writeln!(rs, "// @generated by build.rs from kernels/*.cu: do not edit.\n").unwrap();
    writeln!(rs, "/// `#[repr(C)]` mirrors of the `...Args` structs of kernels/*.cu(h), passed by value.")
        .unwrap();
    writeln!(rs, "pub mod params {{").unwrap();
    for s in &structs {
        writeln!(rs, "    #[repr(C)]\n    #[derive(Clone, Copy, Debug, Default, PartialEq)]").unwrap();
        writeln!(rs, "    pub struct {} {{", s.name).unwrap();
        for (t, n) in &s.fields {
            writeln!(rs, "        pub {n}: {t},").unwrap();
        }
        writeln!(rs, "    }}").unwrap();
    }
    writeln!(rs, "}}\n").unwrap();
    let quote = |p: &Path| format!("{:?}", p.to_str().unwrap());
    writeln!(rs, "/// Headers the kernel files include, by include name.").unwrap();
    writeln!(rs, "pub const HEADERS: &[(&str, &str)] = &[").unwrap();
    for h in &headers {
        writeln!(rs, "    ({:?}, include_str!({})),", h.file_name().unwrap().to_str().unwrap(), quote(h))
            .unwrap();
    }
    writeln!(rs, "];\n").unwrap();
    writeln!(rs, "/// One kernel file: its name under kernels/ and its text.").unwrap();
    writeln!(rs, "#[derive(Clone, Copy, Debug)]\npub struct SourceFile {{ pub name: &'static str, pub text: &'static str }}\n").unwrap();
    writeln!(rs, "pub const SOURCES: &[SourceFile] = &[").unwrap();
    for f in &files {
        writeln!(
            rs,
            "    SourceFile {{ name: {:?}, text: include_str!({}) }},",
            f.file_name().unwrap().to_str().unwrap(),
            quote(f)
        )
        .unwrap();
    }
    writeln!(rs, "];\n").unwrap();
    writeln!(rs, "/// Every `extern \"C\" __global__` entry point of kernels/*.cu.").unwrap();
    writeln!(rs, "#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]\npub enum Kernel {{").unwrap();
    for k in &kernels {
        writeln!(rs, "    {},", camel(&k.name)).unwrap();
    }
    writeln!(rs, "}}\n").unwrap();
    writeln!(rs, "impl Kernel {{").unwrap();
    writeln!(rs, "    pub const ALL: &'static [Kernel] = &[").unwrap();
    for k in &kernels {
        writeln!(rs, "        Kernel::{},", camel(&k.name)).unwrap();
    }
    writeln!(rs, "    ];").unwrap();
    writeln!(rs, "    pub fn index(self) -> usize {{ self as usize }}").unwrap();
    writeln!(rs, "    /// The entry point's name (the symbol in the module).").unwrap();
    writeln!(rs, "    pub fn name(self) -> &'static str {{ TABLE[self as usize].0 }}").unwrap();
    writeln!(rs, "    /// Index into [`SOURCES`] of the file that defines it.").unwrap();
    writeln!(rs, "    pub fn file(self) -> usize {{ TABLE[self as usize].1 }}").unwrap();
    writeln!(rs, "    pub fn line(self) -> usize {{ TABLE[self as usize].2 }}").unwrap();
    writeln!(rs, "    /// The parameter declarations as written in the .cu file.").unwrap();
    writeln!(rs, "    pub fn params(self) -> &'static [&'static str] {{ TABLE[self as usize].3 }}").unwrap();
    writeln!(rs, "}}\n").unwrap();
    writeln!(rs, "type Entry = (&'static str, usize, usize, &'static [&'static str]);").unwrap();
    writeln!(rs, "const TABLE: &[Entry] = &[").unwrap();
    for k in &kernels {
        let ps: Vec<String> = k.params.iter().map(|p| format!("{:?}", p.decl)).collect();
        writeln!(rs, "    ({:?}, {}, {}, &[{}]),", k.name, k.file, k.line, ps.join(", ")).unwrap();
    }
    writeln!(rs, "];\n").unwrap();

    writeln!(
        rs,
        "/// Typed launchers: pointer parameters take a `DevPtr`, the `...Args` struct goes by value."
    )
    .unwrap();
    writeln!(rs, "pub mod launch {{").unwrap();
    writeln!(rs, "    #![allow(clippy::too_many_arguments)]").unwrap();
    writeln!(rs, "    use super::Kernel;\n    #[allow(unused_imports)]\n    use super::params::*;").unwrap();
    writeln!(rs, "    use crate::backend::cuda::driver::{{DevPtr, GpuDriver, GpuError, LaunchDims}};")
        .unwrap();
    for k in &kernels {
        let mut sig = Vec::new();
        for p in &k.params {
            sig.push(format!("{}: {}", p.name, rust_type(&p.c_type, &structs, &k.name)));
        }
        writeln!(rs, "    /// kernels/{}:{}", files[k.file].file_name().unwrap().to_str().unwrap(), k.line)
            .unwrap();
        writeln!(
            rs,
            "    pub fn {}<D: GpuDriver + ?Sized>(d: &D, dims: LaunchDims, {}) -> Result<(), GpuError> {{",
            k.name,
            sig.join(", ")
        )
        .unwrap();
        for (i, p) in k.params.iter().enumerate() {
            writeln!(rs, "        let mut a{i} = {};", p.name).unwrap();
        }
        let ptrs: Vec<String> =
            (0..k.params.len()).map(|i| format!("(&raw mut a{i}).cast::<core::ffi::c_void>()")).collect();
        writeln!(rs, "        let mut args = [{}];", ptrs.join(", ")).unwrap();
        writeln!(
            rs,
            "        // SAFETY: each entry points at a live local of exactly the C parameter's type\n        // (DevPtr is a transparent u64 device address; the structs are #[repr(C)] mirrors).\n        unsafe {{ d.launch(Kernel::{}, dims, &mut args) }}",
            camel(&k.name)
        )
        .unwrap();
        writeln!(rs, "    }}").unwrap();
    }
    writeln!(rs, "}}\n").unwrap();

    writeln!(rs, "/// The emulator's entry points, indexed like [`Kernel::ALL`].").unwrap();
    writeln!(rs, "pub mod emu_entry {{").unwrap();
    writeln!(
        rs,
        "    pub type Entry = unsafe extern \"C\" fn(*mut *mut core::ffi::c_void, *const u32, *const u32) -> i32;"
    )
    .unwrap();
    writeln!(rs, "    unsafe extern \"C\" {{").unwrap();
    for k in &kernels {
        writeln!(
            rs,
            "        fn emu_{}(args: *mut *mut core::ffi::c_void, grid: *const u32, block: *const u32) -> i32;",
            k.name
        )
        .unwrap();
    }
    writeln!(rs, "        pub fn dcgan_emu_last_error() -> *const core::ffi::c_char;").unwrap();
    writeln!(rs, "    }}").unwrap();
    writeln!(rs, "    pub static ENTRIES: [Entry; {}] = [", kernels.len()).unwrap();
    for k in &kernels {
        writeln!(rs, "        emu_{},", k.name).unwrap();
    }
    writeln!(rs, "    ];\n}}").unwrap();
    fs::write(out.join("kernels.rs"), rs).unwrap();

    // ---- emulator trampolines
    let mut cpp_files = Vec::new();
    let mut decls =
        String::from("// @generated by build.rs: the emulator's kernel entry points.\n#pragma once\n");
    for (i, f) in files.iter().enumerate() {
        let fname = f.file_name().unwrap().to_str().unwrap();
        let mut cpp = format!(
            "// @generated by build.rs from kernels/{fname}\n#include \"shim.h\"\n#include \"{fname}\"\n\n"
        );
        for k in kernels.iter().filter(|k| k.file == i) {
            writeln!(
                cpp,
                "extern \"C\" int emu_{}(void** args, const unsigned* grid, const unsigned* block) {{",
                k.name
            )
            .unwrap();
            writeln!(
                decls,
                "extern \"C\" int emu_{}(void** args, const unsigned* grid, const unsigned* block);",
                k.name
            )
            .unwrap();
            let mut call = Vec::new();
            for (j, p) in k.params.iter().enumerate() {
                writeln!(cpp, "    {} a{j} = *static_cast<{}*>(args[{j}]);", p.c_type, p.c_type).unwrap();
                call.push(format!("a{j}"));
            }
            writeln!(
                cpp,
                "    return emu::run_grid(grid, block, [&] {{ {}({}); }});\n}}\n",
                k.name,
                call.join(", ")
            )
            .unwrap();
        }
        let path = out.join(format!("emu_{}.cpp", fname.trim_end_matches(".cu")));
        fs::write(&path, cpp).unwrap();
        cpp_files.push(path);
    }
    fs::write(out.join("emu_entries.h"), decls).unwrap();

    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++20")
        .opt_level(2)
        .flag("-ffp-contract=off")
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-unknown-pragmas")
        .include(kdir.join("emu"))
        .include(&kdir)
        .file(kdir.join("emu/runtime.cpp"));
    for f in &cpp_files {
        build.file(f);
    }
    build.compile("dcgan_emu");
}
