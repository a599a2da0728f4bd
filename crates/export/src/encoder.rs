//! The image encoder as ONNX: `encoder.onnx`, ResNet-50 (batch norm already folded into
//! the convolutions) or the demo's concept CNN, from preprocessed NHWC images to features.

use autocaption_concepts::ConceptNet;
use autocaption_onnx::proto::ModelProto;
use autocaption_onnx::TensorData;
use autocaption_vision::{Conv, ResNet};

use crate::builder::{Builder, A, D};

/// A convolution with bias (HWIO weights become OIHW), before any ReLU.
fn conv(b: &mut Builder, name: &str, x: &str, c: &Conv) -> String {
    let mut w = vec![0.0f32; c.weight.len()];
    for y in 0..c.kh {
        for xx in 0..c.kw {
            for i in 0..c.cin {
                for o in 0..c.cout {
                    w[((o * c.cin + i) * c.kh + y) * c.kw + xx] =
                        c.weight[((y * c.kw + xx) * c.cin + i) * c.cout + o];
                }
            }
        }
    }
    let wn = b.init(
        &format!("{name}.weight"),
        vec![c.cout, c.cin, c.kh, c.kw],
        TensorData::F32(w),
    );
    let bn = b.init(
        &format!("{name}.bias"),
        vec![c.cout],
        TensorData::F32(c.bias.clone()),
    );
    let p = &c.pad;
    b.op(
        "Conv",
        name,
        &[x, &wn, &bn],
        &[
            A::Ints("kernel_shape", vec![c.kh as i64, c.kw as i64]),
            A::Ints("strides", vec![c.stride as i64; 2]),
            A::Ints(
                "pads",
                vec![p.top as i64, p.left as i64, p.bottom as i64, p.right as i64],
            ),
        ],
    )
}

fn relu(b: &mut Builder, name: &str, x: &str, on: bool) -> String {
    if on {
        b.op("Relu", &format!("{name}/Relu"), &[x], &[])
    } else {
        x.to_string()
    }
}

/// `encoder.onnx`: input `images` `[N, size, size, 3]` (preprocessed as the weights'
/// preset says), output `features` `[N, 2048]`.
pub fn encoder(net: &ResNet, size: usize) -> ModelProto {
    let mut b = Builder::default();
    let images = b.input(
        "images",
        1,
        &[D::Named("N"), D::Fixed(size), D::Fixed(size), D::Fixed(3)],
    );
    let x = b.op(
        "Transpose",
        "to_nchw",
        &[&images],
        &[A::Ints("perm", vec![0, 3, 1, 2])],
    );
    let stem = net.stem();
    let x = conv(&mut b, "stem", &x, stem);
    let x = relu(&mut b, "stem", &x, stem.relu);
    let mut x = b.op(
        "MaxPool",
        "stem/MaxPool",
        &[&x],
        &[
            A::Ints("kernel_shape", vec![3, 3]),
            A::Ints("strides", vec![2, 2]),
            A::Ints("pads", vec![1, 1, 1, 1]),
        ],
    );
    for (k, (c1, c2, c3, shortcut)) in net.block_convs().into_iter().enumerate() {
        let name = format!("block{k}");
        let y = conv(&mut b, &format!("{name}.conv1"), &x, c1);
        let y = relu(&mut b, &format!("{name}.conv1"), &y, c1.relu);
        let y = conv(&mut b, &format!("{name}.conv2"), &y, c2);
        let y = relu(&mut b, &format!("{name}.conv2"), &y, c2.relu);
        let y = conv(&mut b, &format!("{name}.conv3"), &y, c3);
        let skip = match shortcut {
            Some(s) => conv(&mut b, &format!("{name}.shortcut"), &x, s),
            None => x.clone(),
        };
        let sum = b.op("Add", &format!("{name}/Add"), &[&y, &skip], &[]);
        x = relu(&mut b, &name, &sum, c3.relu);
    }
    let pooled = b.op("GlobalAveragePool", "pool", &[&x], &[]);
    let features = b.op("Flatten", "pool/Flatten", &[&pooled], &[A::Int("axis", 1)]);
    b.output(
        &features,
        "features",
        1,
        &[D::Named("N"), D::Fixed(net.config.features())],
    );
    b.model(
        "autocaption_encoder",
        "autocaption ResNet (batch norm folded): preprocessed images [N, H, W, 3] -> pooled features [N, 2048]",
    )
}

/// `encoder.onnx` of the concept CNN: input `images` `[N, size, size, 3]` (see
/// `autocaption_concepts::pixels`), output `features` `[N, feature_dim]`, the last map
/// average-pooled 2×2 and flattened in (y, x, channel) order, as the network gives them.
pub fn concept_encoder(net: &ConceptNet) -> ModelProto {
    let c = &net.config;
    let mut b = Builder::default();
    let images = b.input(
        "images",
        1,
        &[
            D::Named("N"),
            D::Fixed(c.size),
            D::Fixed(c.size),
            D::Fixed(3),
        ],
    );
    let mut x = b.op(
        "Transpose",
        "to_nchw",
        &[&images],
        &[A::Ints("perm", vec![0, 3, 1, 2])],
    );
    let pool = [
        A::Ints("kernel_shape", vec![2, 2]),
        A::Ints("strides", vec![2, 2]),
    ];
    for (i, (w, bias)) in net.convs.iter().enumerate() {
        let cout = bias.value.len();
        let cin = w.value.len() / (9 * cout);
        // [9·cin, cout] in (ky, kx, cin) row order → OIHW.
        let mut oihw = vec![0.0f32; w.value.len()];
        for ky in 0..3 {
            for kx in 0..3 {
                for ci in 0..cin {
                    for o in 0..cout {
                        oihw[((o * cin + ci) * 3 + ky) * 3 + kx] =
                            w.value[((ky * 3 + kx) * cin + ci) * cout + o];
                    }
                }
            }
        }
        let name = format!("conv{i}");
        let wn = b.init(
            &format!("{name}.weight"),
            vec![cout, cin, 3, 3],
            TensorData::F32(oihw),
        );
        let bn = b.init(
            &format!("{name}.bias"),
            vec![cout],
            TensorData::F32(bias.value.clone()),
        );
        let y = b.op(
            "Conv",
            &name,
            &[&x, &wn, &bn],
            &[
                A::Ints("kernel_shape", vec![3, 3]),
                A::Ints("pads", vec![1, 1, 1, 1]),
            ],
        );
        let y = b.op("Relu", &format!("{name}/Relu"), &[&y], &[]);
        let op = if i + 1 < net.convs.len() {
            "MaxPool"
        } else {
            "AveragePool"
        };
        x = b.op(op, &format!("{name}/{op}"), &[&y], &pool);
    }
    let nhwc = b.op(
        "Transpose",
        "to_nhwc",
        &[&x],
        &[A::Ints("perm", vec![0, 2, 3, 1])],
    );
    let features = b.op(
        "Flatten",
        "features/Flatten",
        &[&nhwc],
        &[A::Int("axis", 1)],
    );
    b.output(
        &features,
        "features",
        1,
        &[D::Named("N"), D::Fixed(c.feature_dim())],
    );
    b.model(
        "autocaption_concept_encoder",
        "autocaption concept CNN: images [N, size, size, 3] (pixels/255 - 0.5) -> features [N, feature_dim]",
    )
}
