"""`tunesmith chat MODEL`: talk to any model in the terminal, tokens streaming as they come."""

from __future__ import annotations

from typing import Annotated

import typer

from tunesmith.cli.console import err, out


def chat_command(
    model: Annotated[
        str, typer.Argument(help="Built-in name, local folder, or ft:… model/checkpoint.")
    ] = "smollm2-135m-instruct",
    prompt: Annotated[
        str | None, typer.Option("--prompt", "-p", help="Answer this one prompt and exit.")
    ] = None,
    system: Annotated[str | None, typer.Option(help="System message.")] = None,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0, help="0 is greedy.")] = 0.7,
    max_tokens: Annotated[int, typer.Option(min=1, help="Longest answer in tokens.")] = 512,
    seed: Annotated[int | None, typer.Option(help="Seed for sampling.")] = None,
) -> None:
    """Chat with a model; with --prompt, print one answer.

    Example: tunesmith chat ft:smollm2-135m-instruct:local:orders:AbC12345 -p "Ship 3 lamps to Oslo"
    """
    from tunesmith.cli.store import store

    spec = store().models.resolve(model)  # an unknown name fails before torch is imported
    from tunesmith.data.records import Message
    from tunesmith.data.render import encode_prompt
    from tunesmith.infer.engine import Engine
    from tunesmith.infer.sampling import SamplingParams

    engine = Engine(max_batch=1)
    params = SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed)
    history: list[Message] = [Message(role="system", content=system)] if system else []

    def answer(text: str) -> None:
        history.append(Message(role="user", content=text))
        ids = encode_prompt(engine.tokenizer(spec), history)
        seq = engine.submit(spec, ids, params)
        reply = []
        for delta in engine.stream(seq):
            out.print(delta.text, end="", soft_wrap=True)
            reply.append(delta.text)
        out.print()
        history.append(Message(role="assistant", content="".join(reply)))

    try:
        if prompt is not None:
            answer(prompt)
            return
        err.print(f"Chatting with [bold]{spec.name}[/]. Empty line or Ctrl-D to quit.")
        while True:
            try:
                text = out.input("[bold cyan]you>[/] ")
            except EOFError:
                break
            if not text.strip():
                break
            answer(text)
    finally:
        engine.close()


def register(app: typer.Typer) -> None:
    app.command("chat")(chat_command)
