# Two entry points: `make demo` runs the main job on embedded defaults, `make test` runs lint and tests.
# Each creates (or refreshes) the environments it needs: .venv for the package, .venv-transformers for
# the transformers engine (torch pinned to the CPU build), .venv-verl for verl's dataset test,
# .venv-llamafactory for LLaMA-Factory's dataset test, and Debian's Chromium for the viewer test.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ENGINE_VENV ?= .venv-transformers
ENGINE_BIN := $(ENGINE_VENV)/bin
TORCH_SPEC ?= torch==2.13.0
# The TRL release the chat renderer's TRL checks (tool loop, templates) were verified against.
TRL_SPEC ?= trl==1.16.0
VERL_VENV ?= .venv-verl
VERL_BIN := $(VERL_VENV)/bin
# verl 0.9.1 requires transformers>=5.5.3,!=5.6.0,<5.11, so it gets its own environment; its agent loop
# needs the five packages after it (verl lists them only in its verl-core extra), as the `verl` extra does.
VERL_SPEC ?= verl==0.9.1 transformers>=5.5.3,!=5.6.0,<5.11 cachetools fastapi uvicorn pyzmq msgspec
LF_VENV ?= .venv-llamafactory
LF_BIN := $(LF_VENV)/bin
# llamafactory 0.9.5 requires transformers<=5.6.0 and lists torchvision/torchaudio, whose wheels would
# replace the CPU torch with a CUDA build; it goes in with --no-deps and its other requirements are
# named here (the web UI, API server, audio and video ones left out: the data pipeline does not use them).
LF_SPEC ?= llamafactory==0.9.5
LF_DEPS ?= transformers>=4.55.0,<=5.6.0,!=4.57.0 accelerate>=1.3.0,<=1.11.0 datasets>=2.16.0,<=4.0.0 \
  peft>=0.18.0,<=0.18.1 trl>=0.18.0,<=0.24.0 torchdata>=0.10.0,<=0.11.0 tyro<0.9.0 einops fire omegaconf \
  pandas protobuf safetensors scipy sentencepiece
PYTEST_ARGS ?=

.PHONY: demo demo-train test lint test-core test-engine test-verl test-llamafactory browser bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "codevision needs Python >= 3.10")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.core-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.core-installed

$(ENGINE_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(ENGINE_VENV)
	$(ENGINE_BIN)/python -m pip install --quiet --upgrade pip
	$(ENGINE_BIN)/python -m pip install --quiet '$(TORCH_SPEC)'
	$(ENGINE_BIN)/python -m pip install --quiet -e '.[dev,train]' '$(TRL_SPEC)' '$(TORCH_SPEC)'
	@touch $@

# torch is installed first and repeated in every later install so pip never swaps the CPU build.
$(VERL_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VERL_VENV)
	$(VERL_BIN)/python -m pip install --quiet --upgrade pip
	$(VERL_BIN)/python -m pip install --quiet '$(TORCH_SPEC)'
	$(VERL_BIN)/python -m pip install --quiet $(foreach spec,$(VERL_SPEC),'$(spec)') pytest pytest-timeout '$(TORCH_SPEC)'
	$(VERL_BIN)/python -m pip install --quiet -e . '$(TORCH_SPEC)'
	@touch $@

$(LF_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(LF_VENV)
	$(LF_BIN)/python -m pip install --quiet --upgrade pip
	$(LF_BIN)/python -m pip install --quiet '$(TORCH_SPEC)'
	$(LF_BIN)/python -m pip install --quiet --no-deps '$(LF_SPEC)'
	$(LF_BIN)/python -m pip install --quiet $(foreach spec,$(LF_DEPS),'$(spec)') pytest pytest-timeout -e . '$(TORCH_SPEC)'
	@touch $@

demo: $(VENV)/.core-installed
	$(BIN)/codevision demo

# A tiny model learns on CPU: data synth, train sft, train grpo and eval in the training environment.
DEMO_TRAIN_OUT ?= codevision-demo-train
demo-train: $(ENGINE_VENV)/.installed
	$(ENGINE_BIN)/codevision demo train --out $(DEMO_TRAIN_OUT) --overwrite

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check src tests bench

# The viewer's browser test needs Chromium; without root it is skipped with the reason.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) || \
	    echo "chromium not installed and not root: the viewer's browser test will be skipped"; }

test-core: lint browser
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

# The SFT tests also load a trained checkpoint in verl's environment (transformers 5.10); the demo's
# shortened training run (about 5 minutes) checks that SFT and GRPO both improve the model.
test-engine: $(ENGINE_VENV)/.installed $(VERL_VENV)/.installed
	CODEVISION_VERL_PYTHON=$(abspath $(VERL_BIN))/python $(ENGINE_BIN)/python -m pytest -n 2 --dist loadfile \
	  tests/test_transformers_backend.py tests/test_chat_render.py tests/test_data_trl.py tests/test_data_stats.py \
	  tests/test_train_sft.py tests/test_tools.py tests/test_train_environment.py \
	  tests/test_train_grpo.py tests/test_training_demo_model.py tests/test_demo_train.py

# The verl export read by verl's own RLHFDataset, the chat renderer under verl's transformers (5.10;
# the tests that need TRL skip themselves), the recipe's config, and the agent loop and reward run
# through verl's worker path.
test-verl: $(VERL_VENV)/.installed
	$(VERL_BIN)/python -m pytest tests/test_data_verl.py tests/test_chat_render.py tests/test_verl_recipe.py \
	  tests/test_verl_agent_loop.py tests/test_verl_reward.py

# The sharegpt export read by LLaMA-Factory's own data pipeline (converter, mm plugin, SFT masking).
test-llamafactory: $(LF_VENV)/.installed
	$(LF_BIN)/python -m pytest tests/test_data_llamafactory.py

test: test-core test-engine test-verl test-llamafactory

bench: $(VENV)/.core-installed $(ENGINE_VENV)/.installed
	$(BIN)/python bench/sandbox.py
	$(BIN)/python bench/agent_loop.py
	$(BIN)/python bench/transforms.py
	$(BIN)/python bench/eval.py
	$(BIN)/python bench/rewards.py
	$(BIN)/python bench/viewer.py
	$(ENGINE_BIN)/python bench/train_sft.py
	$(ENGINE_BIN)/python bench/train_grpo.py

clean:
	rm -rf $(VENV) $(ENGINE_VENV) $(VERL_VENV) $(LF_VENV) codevision-out codevision-demo codevision-demo-train codevision-runs .pytest_cache .ruff_cache
