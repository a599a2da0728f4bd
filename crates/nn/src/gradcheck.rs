//! Finite-difference gradient checks used by every layer's tests.

/// Checks `analytic`, the gradient of `loss` with respect to `values`, against central
/// differences. The relative error ‖fd − analytic‖ / max(‖fd‖, ‖analytic‖) must be below
/// 1e-3. Up to 200 coordinates, evenly spread, are probed.
pub fn check(what: &str, values: &mut [f32], analytic: &[f32], loss: impl FnMut(&[f32]) -> f64) {
    check_eps(what, 1e-2, values, analytic, loss)
}

/// [`check`] with another step: a smaller one for functions with kinks (ReLU), where a step
/// of 1e-2 can cross the kink.
pub fn check_eps(
    what: &str,
    eps: f32,
    values: &mut [f32],
    analytic: &[f32],
    mut loss: impl FnMut(&[f32]) -> f64,
) {
    const TOL: f64 = 1e-3;
    let n = values.len();
    let stride = (n / 200).max(1);
    let (mut diff, mut norm_fd, mut norm_an) = (0.0f64, 0.0f64, 0.0f64);
    for i in (0..n).step_by(stride) {
        let keep = values[i];
        values[i] = keep + eps;
        let up = loss(values);
        values[i] = keep - eps;
        let down = loss(values);
        values[i] = keep;
        let fd = (up - down) / (2.0 * eps as f64);
        let an = analytic[i] as f64;
        diff += (fd - an).powi(2);
        norm_fd += fd * fd;
        norm_an += an * an;
    }
    let scale = norm_fd.sqrt().max(norm_an.sqrt());
    assert!(scale > 0.0, "{what}: gradient is identically zero");
    let rel = diff.sqrt() / scale;
    assert!(
        rel < TOL,
        "{what}: relative error {rel:.2e} against finite differences"
    );
}
