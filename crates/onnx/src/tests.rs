use super::*;
use proto::{GraphProto, NodeProto, OperatorSetIdProto};

fn model(weights: Vec<f32>) -> ModelProto {
    let n = weights.len();
    ModelProto {
        ir_version: Some(10),
        producer_name: Some("autocaption test".into()),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(22),
        }],
        graph: Some(GraphProto {
            name: Some("g".into()),
            node: vec![NodeProto {
                op_type: Some("Add".into()),
                input: vec!["x".into(), "w".into()],
                output: vec!["y".into()],
                ..Default::default()
            }],
            initializer: vec![
                Tensor::new(vec![n], TensorData::F32(weights)).to_proto("w"),
                Tensor::new(vec![2], TensorData::I64(vec![1, -2])).to_proto("small"),
            ],
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn tensors_of_every_type_round_trip() {
    let cases = [
        Tensor::new(vec![2, 2], TensorData::F32(vec![1.5, -0.0, f32::MAX, 3.0])),
        Tensor::new(vec![3], TensorData::F64(vec![1e300, -2.0, 0.5])),
        Tensor::new(vec![2], TensorData::I32(vec![i32::MIN, 7])),
        Tensor::new(vec![], TensorData::I64(vec![-5])),
        Tensor::new(vec![2], TensorData::I8(vec![-128, 127])),
        Tensor::new(vec![1, 3], TensorData::U8(vec![0, 1, 255])),
        Tensor::new(vec![0, 4], TensorData::Bool(vec![])),
        Tensor::new(vec![2], TensorData::Bool(vec![true, false])),
    ];
    for t in cases {
        let p = t.to_proto("t");
        let back = Tensor::from_proto(&TensorProto::decode(p.encode_to_vec().as_slice()).unwrap());
        assert_eq!(back.as_ref(), Ok(&t));
    }
    // The typed fields, as many exporters write them.
    let typed = TensorProto {
        dims: vec![3],
        data_type: Some(DataType::Float as i32),
        float_data: vec![1.0, 2.0, 3.0],
        ..Default::default()
    };
    assert_eq!(
        Tensor::from_proto(&typed).unwrap().data,
        TensorData::F32(vec![1.0, 2.0, 3.0])
    );
}

use proto::tensor_proto::DataType;

#[test]
fn tensors_with_the_wrong_amount_of_data_are_refused() {
    let mut p = Tensor::new(vec![2], TensorData::F32(vec![1.0, 2.0])).to_proto("w");
    p.raw_data.as_mut().unwrap().pop();
    let e = Tensor::from_proto(&p).unwrap_err();
    assert!(
        e.contains("7 bytes") && e.contains("8 bytes expected"),
        "{e}"
    );
    let typed = TensorProto {
        dims: vec![2, 2],
        data_type: Some(DataType::Int64 as i32),
        int64_data: vec![1, 2, 3],
        ..Default::default()
    };
    let e = Tensor::from_proto(&typed).unwrap_err();
    assert!(e.contains("3 elements") && e.contains("4 expected"), "{e}");
    let negative = TensorProto {
        dims: vec![-1],
        data_type: Some(DataType::Float as i32),
        ..Default::default()
    };
    assert!(Tensor::from_proto(&negative)
        .unwrap_err()
        .contains("negative"));
    let fp8 = TensorProto {
        dims: vec![1],
        data_type: Some(DataType::Float8e4m3fn as i32),
        raw_data: Some(vec![0]),
        ..Default::default()
    };
    assert!(Tensor::from_proto(&fp8)
        .unwrap_err()
        .starts_with(tensor::UNSUPPORTED));

    // In a model file, the error names the file and the tensor.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.onnx");
    let mut m = model(vec![1.0, 2.0]);
    m.graph.as_mut().unwrap().initializer[0].dims = vec![3];
    std::fs::write(&path, m.encode_to_vec()).unwrap();
    let e = read_model(&path).unwrap_err().to_string();
    assert!(e.contains("bad.onnx") && e.contains("tensor 'w'"), "{e}");
}

#[test]
fn models_round_trip_with_large_tensors_in_external_data() {
    let dir = tempfile::tempdir().unwrap();
    let weights: Vec<f32> = (0..100).map(|i| i as f32 * 0.25).collect();
    let m = model(weights.clone());

    let inline = dir.path().join("inline.onnx");
    write_model(&inline, &m, None).unwrap();
    assert_eq!(read_model(&inline).unwrap(), m);
    assert!(!dir.path().join("inline.onnx.data").exists());

    let split = dir.path().join("split.onnx");
    write_model(&split, &m, Some(64)).unwrap();
    let data = std::fs::read(dir.path().join("split.onnx.data")).unwrap();
    assert_eq!(data.len(), 400, "only the 400-byte tensor moves out");
    let bytes = std::fs::read(&split).unwrap();
    assert!(bytes.len() < 200, "{} bytes", bytes.len());
    let stored = ModelProto::decode(bytes.as_slice()).unwrap();
    let w = &stored.graph.as_ref().unwrap().initializer[0];
    assert_eq!(w.data_location, Some(DataLocation::External as i32));
    assert!(w.raw_data.is_none());
    assert_eq!(read_model(&split).unwrap(), m, "read back with its data");
    let t = Tensor::from_proto(&read_model(&split).unwrap().graph.unwrap().initializer[0]);
    assert_eq!(t.unwrap().data, TensorData::F32(weights));
}

#[test]
fn malformed_files_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = model((0..50).map(|i| i as f32).collect()).encode_to_vec();
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "truncated.onnx",
            good[..good.len() - 30].to_vec(),
            "not a valid ONNX model",
        ),
        (
            "text.onnx",
            b"ir_version: 10\ngraph { }\n".to_vec(),
            "not a valid ONNX model",
        ),
        ("empty.onnx", Vec::new(), "no graph"),
        (
            "random.onnx",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
            "not a valid ONNX model",
        ),
    ];
    for (name, bytes, want) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let e = read_model(&path).unwrap_err().to_string();
        assert!(e.contains(name) && e.contains(want), "{name}: {e}");
    }
    let e = read_model(&dir.path().join("missing.onnx"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.onnx"), "{e}");
    let e = read_tensor(&dir.path().join("text.onnx"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("text.onnx"), "{e}");
}

#[test]
fn external_data_may_not_leave_the_directory_or_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let m = model((0..100).map(|i| i as f32).collect());
    let path = dir.path().join("m.onnx");
    write_model(&path, &m, Some(64)).unwrap();
    let mut stored = ModelProto::decode(std::fs::read(&path).unwrap().as_slice()).unwrap();
    let set = |m: &mut ModelProto, key: &str, value: &str| {
        let w = &mut m.graph.as_mut().unwrap().initializer[0];
        for e in &mut w.external_data {
            if e.key.as_deref() == Some(key) {
                e.value = Some(value.into());
            }
        }
    };
    for (key, value, want) in [
        ("location", "../m.onnx.data", "leaves the model's directory"),
        ("location", "/etc/passwd", "leaves the model's directory"),
        ("offset", "390", "beyond the 400 bytes"),
        ("length", "ten", "is not a number"),
        ("location", "nothing.data", "nothing.data"),
    ] {
        let mut bad = stored.clone();
        set(&mut bad, key, value);
        let p = dir.path().join("bad.onnx");
        std::fs::write(&p, bad.encode_to_vec()).unwrap();
        let e = read_model(&p).unwrap_err().to_string();
        assert!(e.contains(want), "{key}={value}: {e}");
    }
    set(&mut stored, "offset", "0");
    std::fs::write(dir.path().join("ok.onnx"), stored.encode_to_vec()).unwrap();
    assert!(read_model(&dir.path().join("ok.onnx")).is_ok());
}
