# mod_ratelimit2 -- top-level build.
#
#   make            core library, Apache module, test programs
#   make check      install dependencies, build, run every test suite
#   make demo       build and run Apache with the module on loopback
#   make fuzz       run the libFuzzer targets for a bounded time
#   make soak       the reliability suites at length (RL2_SOAK=1)
#   make bench      benchmarks: docs/PERFORMANCE.md, bench/results.json
#   make format-check  fail, naming the files, if clang-format would
#                   change a C source; make format rewrites them
#   make coverage   gcov build in build/cov, every suite, line and branch
#                   coverage per folder (build/cov/coverage.txt)
#   make SAN=1 ...  the same with AddressSanitizer + UBSan
#   make clean

SAN      ?= 0
CC       ?= cc
APXS     ?= apxs
BUILD    ?= build

comma    := ,
WARN     := -Wall -Wextra -Werror
# Hidden visibility: the core is a static archive linked into the module
# and the programs; in the module, calls between its functions are then
# direct, not through the PLT, and may be inlined (the module exports
# ratelimit2_module alone: mod_ratelimit2.h).
CFLAGS_C := -std=c11 -D_GNU_SOURCE -O2 -g -fPIC -fvisibility=hidden $(WARN) \
            -Icommon/include
# The core's folders include each other's internal headers as
# "folder/name.h"; only the core, its unit tests, the test tools and the
# benchmark use this path.
CORE_INC := -Icommon
LDLIBS   := -lconfig -lhiredis -lmaxminddb -lpthread -lrt

ifeq ($(SAN),1)
BUILD    := build/san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer \
            -fno-sanitize-recover=all
CFLAGS_C += $(SANFLAGS) -O1
LDSAN    := $(SANFLAGS)
APXS_SAN := -Wc,-fsanitize=address -Wc,-fsanitize=undefined \
            -Wc,-fno-omit-frame-pointer -Wl,-fsanitize=address \
            -Wl,-fsanitize=undefined
endif

# make coverage (COV=1): gcov counters in everything, at -O0 so that lines
# and branches are the source's, in a build directory of its own.
COV      ?= 0
ifeq ($(COV),1)
BUILD    := build/cov
# Atomic counters: the threads of the unit tests and of Apache's event
# MPM would otherwise lose updates, and gcov print negative counts.
COVFLAGS := --coverage -fprofile-update=atomic
CFLAGS_C += $(COVFLAGS) -O0
LDSAN    += $(COVFLAGS)
# libtool may drop --coverage from the module's link line: -lgcov is
# named as well.
APXS_SAN += $(addprefix -Wc$(comma),$(COVFLAGS)) -Wc,-O0 \
            -Wl,--coverage -lgcov
endif

# The core, one folder per subsystem in the order of docs/architecture.md.
CORE_DIRS := base algo policy store redis control decide obs backend load
CORE_SRC := $(sort $(foreach d,$(CORE_DIRS),$(wildcard common/$(d)/*.c)))
CORE_OBJ := $(CORE_SRC:common/%.c=$(BUILD)/common/%.o)
CORE_HDR := $(wildcard common/include/ratelimit2/*.h) \
            $(foreach d,$(CORE_DIRS),$(wildcard common/$(d)/*.h))
LIB      := $(BUILD)/libratelimit2.a

UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TOOL_SRC := $(sort $(wildcard tests/tools/*.c))
TOOL_BIN := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tools/%)

# ratelimit2-fcgi (the FastCGI daemon) and ratelimit2-cgi (the CGI
# wrapper) share the CGI-variable and response code.
FCGI_SHARED := fcgi/request.c fcgi/response.c fcgi/policy.c
FCGI_SRC := fcgi/main.c fcgi/worker.c fcgi/vet.c fcgi/authorizer.c \
            fcgi/generation.c fcgi/listen.c fcgi/log.c fcgi/metrics.c \
            fcgi/once.c fcgi/admin.c fcgi/fast.c fcgi/http.c \
            fcgi/http_conn.c \
            $(FCGI_SHARED)
CGI_SRC  := fcgi/cgi.c $(FCGI_SHARED)
FCGI_BIN := $(BUILD)/fcgi/ratelimit2-fcgi
CGI_BIN  := $(BUILD)/fcgi/ratelimit2-cgi

MODULE   := $(BUILD)/mod_ratelimit2.so
MOD_SRC  := $(sort $(wildcard mod_ratelimit2/*.c))

.PHONY: all lib module fcgi tests check demo fuzz soak clean deps

all: lib module fcgi tests ctl

deps:
	@scripts/deps.sh

lib: $(LIB)
module: $(MODULE)
fcgi: $(FCGI_BIN) $(CGI_BIN)
tests: $(UNIT_BIN) $(TOOL_BIN)

$(BUILD)/common/%.o: common/%.c $(CORE_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_C) $(CORE_INC) -c -o $@ $<

$(LIB): $(CORE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/fcgi/%.o: fcgi/%.c fcgi/fcgi.h \
                   $(wildcard common/include/ratelimit2/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_C) -c -o $@ $<

$(FCGI_BIN): $(FCGI_SRC:fcgi/%.c=$(BUILD)/fcgi/%.o) $(LIB)
	$(CC) $(CFLAGS_C) -o $@ $(filter %.o,$^) $(LIB) -lfcgi $(LDLIBS) \
	    $(LDSAN)

$(CGI_BIN): $(CGI_SRC:fcgi/%.c=$(BUILD)/fcgi/%.o) $(LIB)
	$(CC) $(CFLAGS_C) -o $@ $(filter %.o,$^) $(LIB) $(LDLIBS) $(LDSAN)

$(BUILD)/tests/%: tests/unit/%.c $(LIB) $(wildcard tests/unit/*.h) $(CORE_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_C) $(CORE_INC) -Itests/unit -o $@ $< $(LIB) -lcmocka $(LDLIBS) \
	    $(LDSAN)

$(BUILD)/tools/%: tests/tools/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_C) $(CORE_INC) -o $@ $< $(LIB) $(LDLIBS) $(LDSAN)

# apxs drives libtool; -Wc passes compiler flags, -Wl linker flags.  The
# core is linked in statically so the module has no extra runtime path.
$(MODULE): $(MOD_SRC) $(LIB) $(wildcard mod_ratelimit2/*.h)
	@mkdir -p $(BUILD)/mod
	cp $(MOD_SRC) $(wildcard mod_ratelimit2/*.h) $(BUILD)/mod/
	cd $(BUILD)/mod && $(APXS) -c -o mod_ratelimit2.so \
	    -Wc,-std=gnu11 -Wc,-fvisibility=hidden \
	    $(addprefix -Wc$(comma),$(WARN)) \
	    -I$(CURDIR)/common/include \
	    $(APXS_SAN) \
	    $(notdir $(MOD_SRC)) $(abspath $(LIB)) -lconfig -lhiredis \
	    -lmaxminddb -lrt \
	    >build.log 2>&1 \
	    || { cat build.log; exit 1; }
	cp $(BUILD)/mod/.libs/mod_ratelimit2.so $@

# ratelimit2ctl: the operator's tool; one file per subcommand.  It reads
# -R/-O like ratelimit2-fcgi, with the core's parser (store_opts.h).
CTL_SRC  := $(sort $(wildcard ctl/*.c))
CTL_BIN  := $(BUILD)/ctl/ratelimit2ctl

.PHONY: ctl
ctl: $(CTL_BIN)

$(BUILD)/ctl/%.o: ctl/%.c ctl/ctl.h ctl/accesslog.h \
                  $(wildcard common/include/ratelimit2/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_C) -c -o $@ $<

# init's starter policies, conf/init/TYPE.conf, as C strings (with
# \\, " and ? escaped: ? so that no "??x" reads as a trigraph).
INIT_TEMPLATES := $(sort $(wildcard conf/init/*.conf))
$(BUILD)/ctl/init_templates.h: $(INIT_TEMPLATES) Makefile
	@mkdir -p $(dir $@)
	@{ echo '/* Generated from conf/init/TYPE.conf by the Makefile. */'; \
	  for f in $(INIT_TEMPLATES); do \
	    n=$$(basename $$f .conf); \
	    echo "static const char rl2_ctl_template_$$n[] ="; \
	    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/?/\\?/g' \
	        -e 's/^/    "/' -e 's/$$/\\n"/' $$f; \
	    echo ';'; \
	  done; \
	  echo 'static const struct { const char *name, *text; }'; \
	  echo '    rl2_ctl_templates[] = {'; \
	  for f in $(INIT_TEMPLATES); do \
	    n=$$(basename $$f .conf); \
	    echo "    { \"$$n\", rl2_ctl_template_$$n },"; \
	  done; \
	  echo '};'; \
	  echo '#define RL2_CTL_N_TEMPLATES \'; \
	  echo '    (sizeof(rl2_ctl_templates) / sizeof(rl2_ctl_templates[0]))'; \
	} >$@.tmp && mv $@.tmp $@

$(BUILD)/ctl/init.o: $(BUILD)/ctl/init_templates.h
$(BUILD)/ctl/init.o: CFLAGS_C += -I$(BUILD)/ctl

# usage reads the core's usage series through obs/usage.h, a header of
# the core's own (ctl/usage.h): those files get the core's include path.
CTL_USAGE_OBJ := $(addprefix $(BUILD)/ctl/,usage.o usage_out.o usage_html.o)
$(CTL_USAGE_OBJ): CFLAGS_C += $(CORE_INC)
$(CTL_USAGE_OBJ): ctl/usage.h common/obs/usage.h

# zlib: coverage reads rotated access logs (.gz) as they are.
$(CTL_BIN): $(CTL_SRC:ctl/%.c=$(BUILD)/ctl/%.o) $(LIB)
	$(CC) $(CFLAGS_C) -o $@ $(filter %.o,$^) $(LIB) $(LDLIBS) -lz $(LDSAN)

# test_usage_out includes usage's renderers and ctl/escape.c.
$(BUILD)/tests/test_usage_out: ctl/usage_out.c ctl/usage_html.c \
    ctl/escape.c ctl/usage.h ctl/ctl.h

# test_accesslog includes ctl/accesslog.c (the reader is ratelimit2ctl's,
# not the core's): rebuilt when it changes, linked with zlib.
$(BUILD)/tests/test_accesslog: ctl/accesslog.c ctl/accesslog.h
$(BUILD)/tests/test_accesslog: LDLIBS += -lz
# test_http includes fcgi/http.c (ratelimit2-fcgi's HTTP listener).
$(BUILD)/tests/test_http: fcgi/http.c fcgi/fcgi.h

check: deps
	@$(MAKE) --no-print-directory all
	@SAN=$(SAN) BUILD=$(BUILD) tests/run-all.sh

demo: deps
	@$(MAKE) --no-print-directory lib module
	@SAN=$(SAN) BUILD=$(BUILD) scripts/demo.sh

# Each target until a million executions (at most 15 min each); the
# counts go into docs/PERFORMANCE.md.
fuzz: deps
	@$(MAKE) --no-print-directory lib
	@BUILD=$(BUILD) FUZZ_RUNS=$${FUZZ_RUNS:-1000000} \
	    FUZZ_SECONDS=$${FUZZ_SECONDS:-900} \
	    FUZZ_RECORD=docs/PERFORMANCE.md tests/fuzz/run.sh

# The reliability suites with their long sizes (a million-client flood).
soak: deps
	@$(MAKE) --no-print-directory all
	@SAN=$(SAN) BUILD=$(BUILD) RL2_SOAK=1 ONLY=reliability/ tests/run-all.sh

# ---- make bench: every benchmark, then docs/PERFORMANCE.md and
# bench/results.json; BENCH_QUICK=1 for a short trial (bench/run.sh).
# Always the plain build: sanitizers would measure themselves.
BENCH_BIN := build/bench/rl2_core_bench

$(BENCH_BIN): bench/rl2_core_bench.c build/libratelimit2.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_C) $(CORE_INC) -o $@ $< build/libratelimit2.a $(LDLIBS)

.PHONY: bench
bench: deps
	@$(MAKE) --no-print-directory SAN=0 all $(BENCH_BIN)
	@BUILD=build bench/run.sh

clean:
	rm -rf build

# ---- make coverage: the gcov build (COV=1, build/cov), every suite with
# it (ONLY= as for make check), then line and branch coverage per folder
# on stdout and in build/cov/coverage.txt (scripts/coverage.sh).
.PHONY: coverage
coverage: deps
	@$(MAKE) --no-print-directory COV=1 all
	@scripts/coverage.sh build/cov

# ---- make format-check / make format: clang-format (.clang-format) over
# the C sources git tracks; scripts/format.sh lists them.
.PHONY: format format-check
format-check:
	@scripts/format.sh --check

format:
	@scripts/format.sh --fix

# ---- man pages, install, Debian packages ----
#
#   make man                      build/man/*.{5,8} from docs/man/*.md
#   make install [DESTDIR=] [PREFIX=/usr/local]
#   make deb                      build/deb/*.deb (dpkg-buildpackage -b)
#
# Distributions pass their hardening flags in EXTRA_CFLAGS and
# EXTRA_LDFLAGS (debian/rules takes them from dpkg-buildflags); they are
# added to the project's own for the programs and the module alike.
CFLAGS_C += $(EXTRA_CFLAGS)
LDSAN    += $(EXTRA_LDFLAGS)
APXS_SAN += $(addprefix -Wc$(comma),$(EXTRA_CFLAGS)) \
            $(addprefix -Wl$(comma),$(EXTRA_LDFLAGS))

VERSION  ?= $(shell sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' \
                packaging/debian/changelog)
MAN_SRC  := $(sort $(wildcard docs/man/*.md))
MAN_OUT  := $(MAN_SRC:docs/man/%.md=build/man/%) build/man/ratelimit2-cgi.8
MAN_DATE := $(shell date -u -d @$${SOURCE_DATE_EPOCH:-$$(git log -1 \
                --format=%ct 2>/dev/null || date +%s)} +%Y-%m-%d)

PREFIX   ?= /usr/local
SBINDIR  ?= $(PREFIX)/sbin
# The multiarch directory (lib/x86_64-linux-gnu) for PREFIX=/usr on a
# multiarch system, as GNUInstallDirs does; PREFIX/lib elsewhere.
MULTIARCH ?= $(shell dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null \
                || $(CC) -print-multiarch 2>/dev/null)
LIBDIR   ?= $(PREFIX)/lib$(if $(filter /usr,$(PREFIX)),$(MULTIARCH:%=/%))
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
MANDIR   ?= $(PREFIX)/share/man
DOCDIR   ?= $(PREFIX)/share/doc/ratelimit2
SYSCONFDIR ?= /etc
APXS_LIBEXECDIR = $(shell $(APXS) -q LIBEXECDIR 2>/dev/null)
MODDIR   ?= $(or $(APXS_LIBEXECDIR),/usr/lib/apache2/modules)
UNITDIR  ?= $(or $(shell pkg-config --variable=systemdsystemunitdir \
                systemd 2>/dev/null),/lib/systemd/system)
DEBDIR   ?= build/deb
DEBSRC   ?= build/debsrc

.PHONY: man install deb

man: $(MAN_OUT)

build/man/%: docs/man/%.md scripts/md2man.pl docs/configuration.md \
             docs/fastcgi.md
	@mkdir -p $(dir $@)
	perl scripts/md2man.pl -v '$(VERSION)' -d '$(MAN_DATE)' $< >$@.tmp
	mv $@.tmp $@

# One page documents both programs.
build/man/ratelimit2-cgi.8:
	@mkdir -p $(dir $@)
	echo '.so man8/ratelimit2-fcgi.8' >$@

# The policy file is installed only where there is none: make install
# never overwrites what the administrator wrote.
install: module fcgi man
	install -d $(DESTDIR)$(MODDIR) $(DESTDIR)$(SBINDIR) \
	    $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 \
	    $(DESTDIR)$(SYSCONFDIR)/ratelimit2 $(DESTDIR)$(UNITDIR) \
	    $(DESTDIR)$(DOCDIR)/examples
	install -m 644 $(MODULE) $(DESTDIR)$(MODDIR)/mod_ratelimit2.so
	install -m 755 $(FCGI_BIN) $(CGI_BIN) $(DESTDIR)$(SBINDIR)/
	install -m 644 build/man/*.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 644 build/man/*.8 $(DESTDIR)$(MANDIR)/man8/
	sed -e 's|/usr/sbin/|$(SBINDIR)/|' \
	    -e 's|/etc/ratelimit2/|$(SYSCONFDIR)/ratelimit2/|' \
	    conf/fcgi/ratelimit2-fcgi.service \
	    >$(DESTDIR)$(UNITDIR)/ratelimit2-fcgi.service
	install -m 644 conf/fcgi/ratelimit2-fcgi.socket $(DESTDIR)$(UNITDIR)/
	chmod 644 $(DESTDIR)$(UNITDIR)/ratelimit2-fcgi.service
	install -m 644 conf/examples/saas-api.conf conf/demo.conf \
	    conf/fcgi/*.conf $(DESTDIR)$(DOCDIR)/examples/
	install -m 644 conf/prometheus/ratelimit2.rules.yml \
	    conf/prometheus/ratelimit2.rules.test.yml \
	    conf/prometheus/ratelimit2.anomaly.test.yml \
	    conf/grafana/ratelimit2-dashboard.json $(DESTDIR)$(DOCDIR)/examples/
	sed 's|/usr/lib/apache2/modules/|$(MODDIR)/|' conf/apache/ratelimit2.load \
	    >$(DESTDIR)$(DOCDIR)/examples/apache-ratelimit2.load
	install -m 644 conf/apache/ratelimit2.conf \
	    $(DESTDIR)$(DOCDIR)/examples/apache-ratelimit2.conf
	[ -e $(DESTDIR)$(SYSCONFDIR)/ratelimit2/ratelimit2.conf ] \
	    || install -m 644 conf/ratelimit2.conf \
	        $(DESTDIR)$(SYSCONFDIR)/ratelimit2/ratelimit2.conf

# ratelimit2ctl is installed with the programs (in SBINDIR: an
# administrator's tool that opens root's zone); its man page,
# ratelimit2ctl(8), is among build/man/*.8 and includes a section of
# docs/operations.md.
.PHONY: install-ctl
install: install-ctl
install-ctl: ctl
	install -d $(DESTDIR)$(SBINDIR)
	install -m 755 $(CTL_BIN) $(DESTDIR)$(SBINDIR)/
build/man/ratelimit2ctl.8: docs/operations.md

# The core for other programs (libratelimit2-dev): the static archive the
# front ends link, its public headers and ratelimit2.pc.  No shared
# library: the API changes with the front ends and promises no ABI
# (docs/library.md).  The .pc names libdir and includedir from ${prefix}
# when they lie under PREFIX: a moved tree needs only prefix= changed.
.PHONY: install-dev
install: install-dev
install-dev: lib
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR) \
	    $(DESTDIR)$(INCLUDEDIR)/ratelimit2
	install -m 644 $(LIB) $(DESTDIR)$(LIBDIR)/libratelimit2.a
	install -m 644 common/include/ratelimit2/*.h \
	    $(DESTDIR)$(INCLUDEDIR)/ratelimit2/
	sed -e 's|@PREFIX@|$(PREFIX)|' \
	    -e 's|@LIBDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))|' \
	    -e 's|@INCLUDEDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))|' \
	    -e 's|@VERSION@|$(VERSION)|' \
	    common/ratelimit2.pc.in >$(DESTDIR)$(PKGCONFIGDIR)/ratelimit2.pc
	chmod 644 $(DESTDIR)$(PKGCONFIGDIR)/ratelimit2.pc

# From a clean copy of the tree (the files git knows, as they are in the
# working tree: no build products), so the working tree stays as it is.
deb:
	@rm -rf $(DEBSRC) && mkdir -p $(DEBSRC)/src $(DEBDIR)
	if git rev-parse --git-dir >/dev/null 2>&1; then \
	    git ls-files --cached --others --exclude-standard \
	    | while read -r f; do [ -e "$$f" ] && echo "$$f"; done \
	    | tar -T - -cf - | tar -xf - -C $(DEBSRC)/src; \
	else \
	    tar --exclude=./build -cf - . | tar -xf - -C $(DEBSRC)/src; \
	fi
	cp -r packaging/debian $(DEBSRC)/src/debian
	cd $(DEBSRC)/src && dpkg-buildpackage -us -uc -b -j$$(nproc) \
	    >../build.log 2>&1 \
	    || { tail -60 ../build.log; exit 1; }
	rm -f $(DEBDIR)/*.deb
	mv $(DEBSRC)/*.deb $(DEBSRC)/*.changes $(DEBSRC)/*.buildinfo \
	    $(DEBDIR)/
	rm -rf $(DEBSRC)
	@ls $(DEBDIR)/*.deb
