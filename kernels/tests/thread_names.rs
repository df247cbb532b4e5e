//! The compute pool's thread names, in a test binary of its own: the pool is process-wide
//! and the first use of any kernel would build it unnamed.

use kiln_kernels::name_compute_threads;

#[test]
fn compute_threads_are_named_once_and_keep_their_names() {
    assert!(name_compute_threads());
    let names = rayon::broadcast(|_| std::thread::current().name().map(String::from));
    assert!(!names.is_empty());
    for name in &names {
        assert!(
            name.as_deref().is_some_and(|n| n.starts_with("kiln-cpu-")),
            "{name:?}"
        );
    }
    assert!(!name_compute_threads(), "the pool is built only once");
}
