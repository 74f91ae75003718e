fn main() {
    println!("dcgan {}", env!("CARGO_PKG_VERSION"));
}
