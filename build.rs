fn main() {
    // Migrations are embedded at compile time: rebuild when sql/ changes.
    println!("cargo:rerun-if-changed=sql");
}
