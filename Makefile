# SPDX-License-Identifier: BSD-3-Clause
# strata front door.  `make demo` and `make check` work on a fresh Debian
# machine as root: they install what is missing, build, and run.

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
PYTHON     ?= /usr/bin/python3
WERROR     ?= $(if $(CI),true,false)
# Integration tests run in this many pytest workers (xdist); most of a
# test's time is spent waiting on the daemons and tools it starts.
PYTEST_JOBS ?= auto
PYTEST = $(PYTHON) -m pytest -q -p no:cacheprovider -n $(PYTEST_JOBS)
# Seconds each fuzz target runs in `make check` (on top of its corpus).
FUZZ_SECONDS ?= 15

DEB_PACKAGES = meson ninja-build pkg-config gcc clang libclang-rt-14-dev \
  libjansson-dev zlib1g-dev libzstd-dev libnbd-dev libmicrohttpd-dev \
  libgnutls28-dev gnutls-bin \
  libcmocka-dev python3 python3-pytest python3-pytest-xdist python3-libnbd qemu-utils \
  qemu-system-common nbdkit libnbd-bin fio prometheus util-linux mount procps \
  strace

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps build check check-unit check-integration check-asan \
        check-fuzz check-banned demo bench clean

all: build

# Installs the Debian packages that are missing; idempotent, and runs
# apt-get update only when something has to be installed.
deps:
	@missing=""; \
	for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing:$$missing"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	else echo "All build and test dependencies are installed."; fi

$(BUILD)/build.ninja:
	meson setup $(BUILD) -Dwerror=$(WERROR)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

check: build
	$(MAKE) --no-print-directory check-banned check-unit check-asan check-fuzz check-integration

# Functions that cannot bound what they write are not used anywhere.
check-banned:
	scripts/check-banned.sh

check-unit:
	meson test -C $(BUILD) --suite unit --print-errorlogs

check-integration:
	STRATA_BUILD=$(abspath $(BUILD)) $(PYTEST) tests/integration

# Integration tests that feed strata hostile or broken input, and those
# that race threads (jobs, copy-on-read, the NBD client), run again
# against the ASan+UBSan build: a sanitizer report exits 86/87, which no
# test accepts, also when it comes at exit (a leak).
ASAN_INTEGRATION = test_img_malformed.py test_nbd_hostile.py \
  test_qmp_protocol.py test_qcow2_io.py test_qcow2_policy.py test_nbd_clients.py \
  test_job_stream.py test_block_copy_on_read.py test_block_nbd_client.py \
  test_nbd_handshake_deadline.py test_nbd_tls.py test_nbd_campaign.py \
  test_img_update.py test_image_params_live.py test_img_amend.py \
  test_qcow2_reuse.py test_block_permissions.py test_qmp_live_overlay.py \
  test_qmp_arg_errors.py test_qcow2_subclusters.py test_img_snapshot.py \
  test_img_thin.py test_img_measure.py test_img_syntaxes.py \
  test_qcow2_data_file.py test_block_quorum.py
# Large matrices of well-formed inputs that only repeat, under the
# sanitizers, code paths the other cases already take.
ASAN_DESELECT = \
  --deselect test_img_measure.py::test_measure_source_matches_qemu_img \
  --deselect test_img_measure.py::test_measure_size_matches_qemu_img \
  --deselect test_img_thin.py::test_random_chain \
  --deselect test_img_thin.py::test_commit_base_spelling_020 \
  --deselect test_qcow2_subclusters.py::test_resize_preallocation_metadata \
  --deselect test_img_syntaxes.py::test_protocol_prefix_like_qemu_img

# The unit tests, and the integration tests above, under ASan+UBSan.
check-asan:
	[ -f $(ASAN_BUILD)/build.ninja ] || meson setup $(ASAN_BUILD) \
	  -Db_sanitize=address,undefined -Db_lundef=false -Dwerror=$(WERROR) \
	  -Dbuildtype=debug
	ninja -C $(ASAN_BUILD)
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  meson test -C $(ASAN_BUILD) --suite unit --print-errorlogs
	cd tests/integration && STRATA_BUILD=$(abspath $(ASAN_BUILD)) \
	  ASAN_OPTIONS=exitcode=86:detect_leaks=1 \
	  UBSAN_OPTIONS=halt_on_error=1:exitcode=87:print_stacktrace=1 \
	  $(PYTEST) $(ASAN_INTEGRATION) \
	  $(ASAN_DESELECT)

# Every libFuzzer target runs its seed corpus and then FUZZ_SECONDS of
# new inputs.
check-fuzz:
	[ -f $(FUZZ_BUILD)/build.ninja ] || CC=clang meson setup $(FUZZ_BUILD) \
	  -Dfuzzing=true -Dtests=false -Db_sanitize=address,undefined \
	  -Db_lundef=false -Dwerror=$(WERROR) -Dbuildtype=debug
	ninja -C $(FUZZ_BUILD)
	FUZZ_BUILD=$(FUZZ_BUILD) FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run-all.sh

demo: build
	BUILD=$(abspath $(BUILD)) scripts/demo.sh

bench: build
	BUILD=$(abspath $(BUILD)) bench/run-all.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
