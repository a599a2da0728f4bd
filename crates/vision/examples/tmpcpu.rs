use autocaption_tensor::Rng;
use autocaption_vision::{Layout, Maps, ResNet, ResNetConfig};
use std::collections::BTreeMap;
fn cpu_ns() -> u64 {
    let mut t = 0;
    for e in std::fs::read_dir("/proc/self/task").unwrap() {
        let p = e.unwrap().path().join("schedstat");
        if let Ok(s) = std::fs::read_to_string(p) {
            t += s.split_whitespace().next().unwrap().parse::<u64>().unwrap();
        }
    }
    t
}
fn main() {
    let net = ResNet::random(ResNetConfig::resnet50(Layout::Keras), 0);
    let mut rng = Rng::new(0);
    let n: usize = std::env::args().nth(1).map_or(8, |s| s.parse().unwrap());
    let reps: usize = std::env::args().nth(2).map_or(5, |s| s.parse().unwrap());
    let x = Maps {
        n,
        h: 224,
        w: 224,
        c: 3,
        data: (0..n * 224 * 224 * 3)
            .map(|_| rng.uniform(-120.0, 150.0))
            .collect(),
    };
    net.forward(&x);
    let mut best: BTreeMap<String, f64> = BTreeMap::new();
    let mut order = Vec::new();
    let mut tot = f64::MAX;
    let mut flops: BTreeMap<String, u64> = BTreeMap::new();
    let mut fl: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..reps {
        let mut run: BTreeMap<String, f64> = BTreeMap::new();
        let t0 = cpu_ns();
        let mut last = t0;
        net.forward_profiled(&x, &mut |name, f, _| {
            flops.insert(name.clone(), f);
            let now = cpu_ns();
            if !order.contains(&name) {
                order.push(name.clone());
            }
            *run.entry(name.clone()).or_default() += (now - last) as f64 * 1e-6;
            *fl.entry(name).or_default() += f;
            last = cpu_ns();
        });
        tot = tot.min((cpu_ns() - t0) as f64 * 1e-6);
        for (k, v) in run {
            let b = best.entry(k).or_insert(f64::MAX);
            *b = b.min(v);
        }
    }
    for k in &order {
        println!("{k:<30} {:8.2}", best[k]);
    }
    println!("{:<30} {:8.2}", "total cpu ms", tot);
}
