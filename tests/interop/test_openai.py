"""The official `openai` Python client against Kiln's OpenAI-compatible API: the model
list, completions and chat completions, whole and streamed, with seeds, stop strings,
log-probabilities and several choices, and its errors as the client raises them."""

import openai
import pytest

MODEL = "gru-web-en"


@pytest.fixture(scope="module")
def client(kiln):
    # No retries: an error must surface as the status the server sent.
    return openai.OpenAI(base_url=f"http://{kiln['http']}/v1", api_key="unused", max_retries=0)


def test_models_lists_the_language_models(client):
    ids = [m.id for m in client.models.list()]
    assert MODEL in ids
    assert "lenet-fashion" not in ids
    model = client.models.retrieve(MODEL)
    assert model.id == MODEL and model.owned_by == "kiln" and model.created > 0


def test_a_seeded_completion_repeats_and_streams_the_same_words(client):
    settings = dict(model=MODEL, prompt="and the children of", max_tokens=8, temperature=1.0, seed=42)
    first = client.completions.create(**settings)
    again = client.completions.create(**settings)
    assert first.choices[0].text == again.choices[0].text
    assert first.choices[0].text.strip()
    assert first.choices[0].finish_reason in ("length", "stop")
    assert first.usage.completion_tokens <= 8
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens
    chunks = list(client.completions.create(**settings, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == first.choices[0].text
    assert chunks[-1].choices[0].finish_reason == first.choices[0].finish_reason


def test_greedy_completions_report_the_likeliest_words(client):
    answer = client.completions.create(
        model=MODEL, prompt="and the children of", max_tokens=1, temperature=0, logprobs=5
    )
    choice = answer.choices[0]
    top = choice.logprobs.top_logprobs[0]
    # The phrase recurs hundreds of times in the Bible the model learnt.
    assert " israel" in top and len(top) == 5
    # Greedy: the chosen word is the likeliest one.
    assert choice.logprobs.tokens[0] == max(top, key=top.get) == choice.text
    assert choice.logprobs.token_logprobs[0] == pytest.approx(max(top.values()))


def test_several_choices_and_stop_strings(client):
    answer = client.completions.create(
        model=MODEL, prompt=["in the beginning", "and god said"], n=2, max_tokens=30,
        temperature=1.0, seed=1, stop=[","], echo=True,
    )
    assert [c.index for c in answer.choices] == [0, 1, 2, 3]
    for choice, prompt in zip(answer.choices, ["in the beginning"] * 2 + ["and god said"] * 2):
        assert choice.text.startswith(prompt)
        assert "," not in choice.text[len(prompt):]


def test_chat_whole_and_streamed(client):
    messages = [
        {"role": "system", "content": "Continue the verse."},
        {"role": "user", "content": "the lord is my shepherd"},
    ]
    whole = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=10, seed=9, logprobs=True, top_logprobs=3
    )
    reply = whole.choices[0].message
    assert reply.role == "assistant" and reply.content and not reply.content.startswith(" ")
    entries = whole.choices[0].logprobs.content
    assert len(entries) == whole.usage.completion_tokens
    assert all(len(e.top_logprobs) == 3 for e in entries)
    stream = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=10, seed=9, stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply.content
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_errors_reach_the_client_as_openai_errors(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="no-such-model", prompt="a")
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL, prompt="a", frequency_penalty=1.0)
    assert e.value.param == "frequency_penalty"
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "a"}], max_tokens=100000
        )
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="lenet-fashion", messages=[{"role": "user", "content": "a"}])
