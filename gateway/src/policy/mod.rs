//! The policy engine: loads WebAssembly policy components and asks them for verdicts.
