//! Writes one of the next runtime versions to a file, for the README walkthrough and for
//! rehearsals: `cargo run -p vexidus-tests --bin write-runtime -- next-example runtime-next.wasm`.

#![forbid(unsafe_code)]

use vexidus_tests::runtimes;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (variant, out) = match args.as_slice() {
        [v, o] => (v.as_str(), o.as_str()),
        _ => {
            eprintln!(
                "usage: write-runtime <next-example|next-bad-migration|next-trap> <out.wasm>"
            );
            std::process::exit(2);
        }
    };
    let blob = match variant {
        "next-example" => runtimes::NEXT_EXAMPLE,
        "next-bad-migration" => runtimes::NEXT_BAD_MIGRATION,
        "next-trap" => runtimes::NEXT_TRAP,
        other => {
            eprintln!(
                "error: unknown variant {other:?}; choose next-example, next-bad-migration or next-trap"
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
