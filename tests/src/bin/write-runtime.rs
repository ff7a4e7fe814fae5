//! Writes one of the second runtime versions to a file, for the README walkthrough and for
//! rehearsals: `cargo run -p vexidus-tests --bin write-runtime -- v2-example runtime-v2.wasm`.

use vexidus_tests::runtimes;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (variant, out) = match args.as_slice() {
        [v, o] => (v.as_str(), o.as_str()),
        _ => {
            eprintln!("usage: write-runtime <v2-example|v2-bad-migration|v2-trap> <out.wasm>");
            std::process::exit(2);
        }
    };
    let blob = match variant {
        "v2-example" => runtimes::V2_EXAMPLE,
        "v2-bad-migration" => runtimes::V2_BAD_MIGRATION,
        "v2-trap" => runtimes::V2_TRAP,
        other => {
            eprintln!(
                "error: unknown variant {other:?}; choose v2-example, v2-bad-migration or v2-trap"
            );
            std::process::exit(2);
        }
    };
    if let Err(e) = std::fs::write(out, blob) {
        eprintln!("error: cannot write {out}: {e}");
        std::process::exit(1);
    }
    println!(
        "{out}: {variant}, {} bytes, blake3 0x{}",
        blob.len(),
        blake3::hash(blob).to_hex()
    );
}
