//! The API described in OpenAPI 3.0, with the limits this server runs with.

use autocaption_pipeline::MAX_WORDS;
use serde_json::{json, Value};

use crate::settings::ServeSettings;

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

/// The OpenAPI document served at `/openapi.json`.
pub fn spec(s: &ServeSettings) -> Value {
    let binary = json!({"schema": {"type": "string", "format": "binary"}});
    let unavailable = json!({
        "description": "The queue is full, the model is loading, the server is shutting down, or no caption came within the time limit; retry after the given seconds.",
        "headers": {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    });
    let status = |values: &[&str]| {
        json!({
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string", "enum": values}}
        })
    };
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "autocaption",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Captions for photos: post an image, get a sentence describing it. Requests that arrive together are encoded and captioned in one batch."
        },
        "paths": {
            "/v1/captions": {
                "post": {
                    "operationId": "caption",
                    "summary": "Caption one image (the body) or several (multipart/form-data, one image a part).",
                    "parameters": [
                        {"name": "beam", "in": "query", "description": "Beam width (1: greedy).",
                         "schema": {"type": "integer", "minimum": 1, "maximum": s.max_beam, "default": s.defaults.beam}},
                        {"name": "max_words", "in": "query", "description": "Most words in the caption.",
                         "schema": {"type": "integer", "minimum": 1, "maximum": MAX_WORDS, "default": s.defaults.max_words}},
                        {"name": "length_alpha", "in": "query", "description": "Length normalisation of beam scores: log p / length^alpha.",
                         "schema": {"type": "number", "minimum": 0, "maximum": 10, "default": s.defaults.length_alpha}},
                        {"name": "alternatives", "in": "query", "description": "Also return the other beams with their scores.",
                         "schema": {"type": "boolean", "default": false}}
                    ],
                    "requestBody": {
                        "required": true,
                        "description": format!("The image's bytes (JPEG, PNG, WebP, GIF, BMP, TIFF or PNM; at most {} bytes and {} pixels), or several images as multipart/form-data (at most {}).", s.max_body_bytes, s.max_pixels, s.max_images),
                        "content": {
                            "image/jpeg": binary, "image/png": binary, "image/webp": binary,
                            "application/octet-stream": binary,
                            "multipart/form-data": {"schema": {
                                "type": "object",
                                "properties": {"image": {"type": "array", "items": {"type": "string", "format": "binary"}}}
                            }}
                        }
                    },
                    "responses": {
                        "200": {"description": "The caption (one image), or one result a part (multipart).",
                                "content": {"application/json": {"schema": {"oneOf": [
                                    {"$ref": "#/components/schemas/Captioned"},
                                    {"$ref": "#/components/schemas/Results"}
                                ]}}}},
                        "400": error_response("The image (or the multipart body) cannot be decoded; the message says why."),
                        "408": error_response("The body did not arrive in time."),
                        "413": error_response("The body, the image's pixel count or the number of images is over the limit."),
                        "415": error_response("The Content-Type is not an image or multipart/form-data."),
                        "422": error_response("An option is unknown or out of range."),
                        "500": error_response("The engine failed on this batch."),
                        "503": unavailable
                    }
                }
            },
            "/healthz": {"get": {"operationId": "health", "summary": "The process is up.",
                "responses": {"200": {"description": "Up.", "content": {"application/json": {"schema": status(&["ok"])}}}}}},
            "/readyz": {"get": {"operationId": "ready", "summary": "The model is loaded and requests are taken.",
                "responses": {
                    "200": {"description": "Ready.", "content": {"application/json": {"schema": status(&["ready"])}}},
                    "503": {"description": "Loading or shutting down.", "content": {"application/json": {"schema": status(&["loading", "draining"])}}}
                }}},
            "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics: requests by status, latency, batch sizes, queue depth.",
                "responses": {"200": {"description": "Prometheus text format 0.0.4.", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document.",
                "responses": {"200": {"description": "OpenAPI 3.0.", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
            "/": {"get": {"operationId": "page", "summary": "A page to pick or drop a photo and see its caption.",
                "responses": {"200": {"description": "HTML.", "content": {"text/html": {"schema": {"type": "string"}}}}}}}
        },
        "components": {"schemas": {
            "Caption": {"type": "object", "required": ["text", "score"], "properties": {
                "text": {"type": "string"},
                "score": {"type": "number", "description": "Length-normalised log-probability (higher is better)."}
            }},
            "Timings": {"type": "object",
                "required": ["read_ms", "decode_ms", "queue_ms", "encode_ms", "caption_ms", "total_ms", "batch"],
                "properties": {
                    "read_ms": {"type": "number"}, "decode_ms": {"type": "number"}, "queue_ms": {"type": "number"},
                    "encode_ms": {"type": "number"}, "caption_ms": {"type": "number"}, "total_ms": {"type": "number"},
                    "batch": {"type": "integer", "minimum": 1, "description": "Images encoded together with this one."}
                }},
            "Captioned": {"type": "object", "required": ["caption", "score", "timings"], "properties": {
                "name": {"type": "string", "description": "The part's file name (multipart only)."},
                "caption": {"type": "string"},
                "score": {"type": "number"},
                "alternatives": {"type": "array", "items": {"$ref": "#/components/schemas/Caption"}},
                "timings": {"$ref": "#/components/schemas/Timings"}
            }},
            "Failed": {"type": "object", "required": ["name", "error"], "properties": {
                "name": {"type": "string"},
                "error": {"$ref": "#/components/schemas/ErrorDetail"}
            }},
            "Results": {"type": "object", "required": ["results"], "properties": {
                "results": {"type": "array", "items": {"oneOf": [
                    {"$ref": "#/components/schemas/Captioned"}, {"$ref": "#/components/schemas/Failed"}
                ]}}
            }},
            "ErrorDetail": {"type": "object", "required": ["status", "code", "message"], "properties": {
                "status": {"type": "integer"}, "code": {"type": "string"}, "message": {"type": "string"}
            }},
            "Error": {"type": "object", "required": ["error"], "properties": {
                "error": {"$ref": "#/components/schemas/ErrorDetail"}
            }}
        }}
    })
}
