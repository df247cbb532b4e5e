//! The gRPC API through a real tonic client: every `kiln.v1.Tasks` RPC (streaming Generate
//! included), the Open Inference Protocol service, health, reflection, gzip, API keys,
//! deadlines and the error codes.

mod common;

use common::{add_model, pixel_rows, png, post_png, start, test_set};
use futures_util::StreamExt;
use kiln_proto::inference as oip;
use kiln_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use kiln_proto::kiln::v1 as kiln;
use kiln_proto::kiln::v1::tasks_client::TasksClient;
use kiln_server::{RunningServer, ServeSettings};
use tonic::Code;
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;

fn repository() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    add_model(dir.path(), "lenet-fashion", "lenet-fashion", |_| {});
    add_model(dir.path(), "gru-web-en", "gru-web-en", |_| {});
    dir
}

async fn channel(server: &RunningServer) -> Channel {
    Channel::from_shared(format!("http://{}", server.grpc_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_task_rpc_answers_like_its_http_route() {
    let repo = repository();
    let (server, base) = start(ServeSettings::for_tests(repo.path())).await;
    let mut tasks = TasksClient::new(channel(&server).await)
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    let data = test_set();

    let by_file = tasks
        .classify(kiln::ClassifyRequest {
            model: "lenet-fashion".into(),
            input: Some(kiln::classify_request::Input::Image(png(&data, 0))),
            top_k: 3,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_file.model_version, "1");
    assert_eq!(by_file.predictions.len(), 3);
    let pixels: Vec<u8> = pixel_rows(&data, 0).concat();
    let by_pixels = tasks
        .classify(kiln::ClassifyRequest {
            model: "lenet-fashion".into(),
            input: Some(kiln::classify_request::Input::Pixels(kiln::Pixels {
                height: 28,
                width: 28,
                channels: 1,
                values: pixels,
            })),
            top_k: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_pixels.predictions.len(), 5);
    let http: serde_json::Value = post_png(&reqwest::Client::new(), &base, png(&data, 0))
        .query(&[("top_k", 3)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (grpc, http) in by_file
        .predictions
        .iter()
        .zip(http["predictions"].as_array().unwrap())
    {
        assert_eq!(grpc.label, http["label"].as_str().unwrap());
        assert!((f64::from(grpc.probability) - http["probability"].as_f64().unwrap()).abs() < 1e-6);
    }
    assert_eq!(by_pixels.predictions[0].index, by_file.predictions[0].index);

    let words = tasks
        .next_word(kiln::NextWordRequest {
            model: "gru-web-en".into(),
            text: "and the children of".into(),
            top_k: 5,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(words.prompt_tokens, 4);
    assert!(
        words.predictions.iter().any(|w| w.word == "israel"),
        "{words:?}"
    );

    let mut stream = tasks
        .generate(kiln::GenerateRequest {
            model: "gru-web-en".into(),
            text: "in the beginning".into(),
            max_tokens: Some(6),
            temperature: Some(0.0),
            ignore_eos: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut tokens = Vec::new();
    let mut finished = None;
    while let Some(message) = stream.next().await {
        match message.unwrap().event.unwrap() {
            kiln::generate_response::Event::Token(t) => tokens.push(t.text),
            kiln::generate_response::Event::Finished(f) => finished = Some(f),
        }
    }
    let finished = finished.expect("a finish message ends the stream");
    assert_eq!(tokens.len(), 6);
    assert_eq!(finished.completion_tokens, 6);
    assert_eq!(finished.finish_reason, "length");
    assert_eq!(finished.text, tokens.concat());
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn task_errors_map_to_grpc_codes() {
    let repo = repository();
    let (server, _) = start(ServeSettings::for_tests(repo.path())).await;
    let mut tasks = TasksClient::new(channel(&server).await);
    let classify = |model: &str, input| kiln::ClassifyRequest {
        model: model.into(),
        input,
        top_k: 0,
    };
    let image = Some(kiln::classify_request::Input::Image(
        b"not an image".to_vec(),
    ));
    let cases = [
        (classify("missing", image.clone()), Code::NotFound),
        (
            classify("lenet-fashion", image.clone()),
            Code::InvalidArgument,
        ),
        (classify("lenet-fashion", None), Code::InvalidArgument),
        (classify("gru-web-en", image), Code::InvalidArgument),
    ];
    for (request, code) in cases {
        let status = tasks.classify(request).await.unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
        assert!(!status.message().is_empty());
    }
    let too_long = tasks
        .generate(kiln::GenerateRequest {
            model: "gru-web-en".into(),
            text: "word ".repeat(5000),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(too_long.code(), Code::InvalidArgument);

    // Deadlines: the server answers DEADLINE_EXCEEDED itself (a tonic channel would give up
    // on its own first, so these calls go through a plain HTTP/2 client).
    let (mut raw_tasks, mut raw_inference) = without_client_deadline(&server);
    let mut request = tonic::Request::new(kiln::GenerateRequest {
        model: "gru-web-en".into(),
        text: "in the beginning".into(),
        max_tokens: Some(256),
        ignore_eos: true,
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("grpc-timeout", "1n".parse().unwrap());
    let mut stream = raw_tasks.generate(request).await.unwrap().into_inner();
    let ended = loop {
        match stream.next().await {
            Some(Ok(_)) => continue,
            Some(Err(status)) => break status,
            None => panic!("a generation of 256 tokens finished within its 1 ns deadline"),
        }
    };
    assert_eq!(ended.code(), Code::DeadlineExceeded, "{ended:?}");
    let mut request = tonic::Request::new(oip::ModelInferRequest {
        model_name: "gru-web-en".into(),
        inputs: vec![oip::model_infer_request::InferInputTensor {
            name: "text".into(),
            datatype: "BYTES".into(),
            shape: vec![1],
            contents: Some(oip::InferTensorContents {
                bytes_contents: vec![b"and the".to_vec()],
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("grpc-timeout", "1n".parse().unwrap());
    let late = raw_inference.model_infer(request).await.unwrap_err();
    assert_eq!(late.code(), Code::DeadlineExceeded, "{late:?}");
    server.shutdown().await.unwrap();
}

type RawChannel = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    tonic::body::Body,
>;

/// Clients over a bare HTTP/2 connection, which sends `grpc-timeout` without enforcing it.
fn without_client_deadline(
    server: &RunningServer,
) -> (
    TasksClient<RawChannel>,
    GrpcInferenceServiceClient<RawChannel>,
) {
    let client: RawChannel =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let origin: tonic::codegen::http::Uri =
        format!("http://{}", server.grpc_addr()).parse().unwrap();
    (
        TasksClient::with_origin(client.clone(), origin.clone()),
        GrpcInferenceServiceClient::with_origin(client, origin),
    )
}

#[tokio::test]
async fn the_inference_service_serves_raw_tensors() {
    let repo = repository();
    let (server, _) = start(ServeSettings::for_tests(repo.path())).await;
    let mut client = GrpcInferenceServiceClient::new(channel(&server).await);
    assert!(
        client
            .server_live(oip::ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    assert!(
        client
            .server_ready(oip::ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let meta = client
        .model_metadata(oip::ModelMetadataRequest {
            name: "lenet-fashion".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.inputs[0].shape, vec![-1, 1, 28, 28]);

    let data = test_set();
    let classification = oip::InferParameter {
        parameter_choice: Some(oip::infer_parameter::ParameterChoice::Int64Param(1)),
    };
    let request = oip::ModelInferRequest {
        model_name: "lenet-fashion".into(),
        id: "42".into(),
        inputs: vec![oip::model_infer_request::InferInputTensor {
            name: "input".into(),
            datatype: "UINT8".into(),
            shape: vec![1, 28, 28, 1],
            ..Default::default()
        }],
        outputs: vec![
            oip::model_infer_request::InferRequestedOutputTensor {
                name: "probabilities".into(),
                parameters: Default::default(),
            },
            oip::model_infer_request::InferRequestedOutputTensor {
                name: "probabilities".into(),
                parameters: [("classification".to_string(), classification)].into(),
            },
        ],
        raw_input_contents: vec![data.image(0).to_vec()],
        ..Default::default()
    };
    let answer = client
        .model_infer(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.id, "42");
    assert_eq!(answer.outputs[0].shape, vec![1, 10]);
    assert_eq!(answer.outputs[1].datatype, "BYTES");
    let probabilities: Vec<f32> = answer.raw_output_contents[0]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let best = probabilities
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0;
    let label = String::from_utf8(answer.raw_output_contents[1][4..].to_vec()).unwrap();
    assert_eq!(label.split(':').nth(1).unwrap(), best.to_string());

    // Typed contents work as well as raw ones.
    let typed = oip::ModelInferRequest {
        inputs: vec![oip::model_infer_request::InferInputTensor {
            name: "text".into(),
            datatype: "BYTES".into(),
            shape: vec![1],
            contents: Some(oip::InferTensorContents {
                bytes_contents: vec![b"and the children of".to_vec()],
                ..Default::default()
            }),
            ..Default::default()
        }],
        model_name: "gru-web-en".into(),
        ..Default::default()
    };
    let answer = client.model_infer(typed).await.unwrap().into_inner();
    assert_eq!(answer.outputs[0].name, "log_probabilities");

    // Streaming: answers come back in order, an error does not end the stream.
    let mut bad = request.clone();
    bad.model_name = "missing".into();
    bad.id = "bad".into();
    let requests = futures_util::stream::iter(vec![request.clone(), bad, request]);
    let answers: Vec<oip::ModelStreamInferResponse> = client
        .model_stream_infer(requests)
        .await
        .unwrap()
        .into_inner()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(answers.len(), 3);
    assert!(answers[0].error_message.is_empty());
    assert!(answers[1].error_message.contains("missing"));
    assert_eq!(answers[1].infer_response.as_ref().unwrap().id, "bad");
    assert_eq!(answers[2].infer_response.as_ref().unwrap().id, "42");

    let unknown = client
        .model_infer(oip::ModelInferRequest {
            model_name: "lenet-fashion".into(),
            inputs: vec![oip::model_infer_request::InferInputTensor {
                name: "input".into(),
                datatype: "FP32".into(),
                shape: vec![1, 3],
                ..Default::default()
            }],
            raw_input_contents: vec![vec![0; 12]],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);

    let stats = client
        .model_statistics(oip::ModelStatisticsRequest {
            name: "lenet-fashion".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.model_stats[0].inference_count, 3);
    let config = client
        .model_config(oip::ModelConfigRequest {
            name: "gru-web-en".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap();
    assert_eq!(config.input[0].data_type, oip::DataType::TypeString as i32);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn health_reflection_and_api_keys() {
    let repo = repository();
    let mut settings = ServeSettings::for_tests(repo.path());
    settings.api_keys = vec!["secret".into()];
    let (server, _) = start(settings).await;
    let channel = channel(&server).await;

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["", "inference.GRPCInferenceService", "kiln.v1.Tasks"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = reflection
        .server_reflection_info(futures_util::stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        replies.next().await.unwrap().unwrap().message_response
    else {
        panic!("no service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "inference.GRPCInferenceService",
        "kiln.v1.Tasks",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&expected.to_string()), "{names:?}");
    }

    let mut tasks = TasksClient::new(channel);
    let request = || kiln::NextWordRequest {
        model: "gru-web-en".into(),
        text: "the".into(),
        top_k: 1,
    };
    let refused = tasks.next_word(request()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let mut with_key = tonic::Request::new(request());
    with_key
        .metadata_mut()
        .insert("authorization", "Bearer secret".parse().unwrap());
    assert!(tasks.next_word(with_key).await.is_ok());
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn draining_reports_not_serving_and_refuses_new_work() {
    let repo = repository();
    let (server, _) = start(ServeSettings::for_tests(repo.path())).await;
    let channel = channel(&server).await;
    let mut tasks = TasksClient::new(channel.clone());
    // A long generation holds the server in its drain.
    let mut generation = tasks
        .generate(kiln::GenerateRequest {
            model: "gru-web-en".into(),
            text: "in the beginning".into(),
            max_tokens: Some(256),
            ignore_eos: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    generation.next().await.unwrap().unwrap();
    let shutdown = tokio::spawn(server.shutdown());

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let not_serving = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;
    let flipped = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let status = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: "kiln.v1.Tasks".into(),
                })
                .await
                .unwrap()
                .into_inner()
                .status;
            if status == not_serving {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(flipped.is_ok(), "health never reported NOT_SERVING");
    let refused = tasks
        .next_word(kiln::NextWordRequest {
            model: "gru-web-en".into(),
            text: "the".into(),
            top_k: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);

    // The generation in flight was not cut short by the drain; leaving it ends the drain.
    assert!(generation.next().await.unwrap().is_ok());
    drop(generation);
    shutdown.await.unwrap().unwrap();
}
