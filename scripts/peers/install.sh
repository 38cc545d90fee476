#!/usr/bin/env bash
# Installs the real peers that leitstand's integration tests start on 127.0.0.1
# (see internal/peers). Idempotent: a peer that is already installed costs a
# few file checks, and apt is not touched at all when nothing is missing.
#
# Usage: scripts/peers/install.sh [peer...]
#   peers: elasticsearch alertmanager (also gives prometheus, promtool, amtool)
#          prometheus node-exporter postgres rsyslog syslog-ng logger
#   With no peer, all of them are installed.
#
# Quiet on success; on failure it prints what failed (with the tail of the
# failing command's output) on stderr and exits non-zero.
#
# Environment:
#   LEITSTAND_PEERS_CACHE   download/unpack folder (default ~/.cache/leitstand/peers)
#   LEITSTAND_ES_VERSIONS   Elasticsearch versions to try, in order
#                           (default "8.19.7 8.19.8 8.19.6 8.18.8")
set -euo pipefail

PROG=install.sh
CACHE="${LEITSTAND_PEERS_CACHE:-$HOME/.cache/leitstand/peers}"
# 8.19.7 matches the go-elasticsearch client pinned in go.mod. The fallbacks
# are few on purpose: we ask Maven Central for named versions, not for a list.
ES_VERSIONS="${LEITSTAND_ES_VERSIONS:-8.19.7 8.19.8 8.19.6 8.18.8}"
ES_USER=leitstand-es
ALL_PEERS=(elasticsearch alertmanager node-exporter postgres rsyslog syslog-ng logger)
# Marker written last into an unpacked folder: a folder without it is a
# half-finished unpack (interrupted run) and is redone.
OK_MARKER=.leitstand-ok

die() {
	printf '%s: %s\n' "$PROG" "$*" >&2
	exit 1
}

# run_quiet runs a command with its output kept aside; the output is shown
# only if the command fails, so a successful install prints nothing.
run_quiet() {
	local log status=0
	log=$(mktemp)
	"$@" >"$log" 2>&1 || status=$?
	if ((status != 0)); then
		printf '%s: command failed (exit %d): %s\n' "$PROG" "$status" "$*" >&2
		tail -n 40 "$log" | sed 's/^/    /' >&2
	fi
	rm -f "$log"
	return "$status"
}

need_root() {
	[[ $EUID -eq 0 ]] || die "$1 needs root (apt-get, useradd); run as root"
}

pkg_installed() {
	[[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" == installed ]]
}

# find_bin looks a program up in PATH and in the sbin folders, which a
# non-login root shell or a test runner may not have in PATH.
find_bin() {
	local p
	p=$(command -v "$1" 2>/dev/null) && { printf '%s\n' "$p"; return 0; }
	for p in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
		[[ -x $p/$1 ]] && { printf '%s\n' "$p/$1"; return 0; }
	done
	return 1
}

APT_UPDATED=0
# apt_update_once refreshes the package lists at most once per run, and only
# when something is about to be installed or downloaded.
apt_update_once() {
	((APT_UPDATED)) && return 0
	need_root "apt-get update"
	run_quiet apt-get -q -o DPkg::Lock::Timeout=600 update || die "apt-get update failed"
	APT_UPDATED=1
}

POLICY_RC=/usr/sbin/policy-rc.d
POLICY_RC_OURS=0
# A package's postinst must not start a system-wide daemon (rsyslog would take
# /dev/log, postgresql port 5432): tests start private instances. If the
# machine has no policy-rc.d, put one in place for the install only.
block_service_start() {
	[[ -e $POLICY_RC ]] && return 0
	printf '#!/bin/sh\n# temporary, from leitstand scripts/peers/install.sh\nexit 101\n' >"$POLICY_RC"
	chmod 755 "$POLICY_RC"
	POLICY_RC_OURS=1
}
cleanup() {
	if ((POLICY_RC_OURS)); then rm -f "$POLICY_RC"; fi
}
trap cleanup EXIT

# apt_install installs those of the given packages that are not installed.
apt_install() {
	local missing=() p
	for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
	((${#missing[@]} == 0)) && return 0
	need_root "installing ${missing[*]}"
	apt_update_once
	block_service_start
	run_quiet env DEBIAN_FRONTEND=noninteractive apt-get -q -y \
		-o DPkg::Lock::Timeout=600 --no-install-recommends install "${missing[@]}" ||
		die "apt-get install ${missing[*]} failed"
}

# apt_has tells whether the package lists know a package (after one update).
apt_has() {
	apt_update_once
	[[ -n "$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p' | grep -v '(none)' || true)" ]]
}

require_bins() {
	local peer=$1 b
	shift
	for b in "$@"; do
		find_bin "$b" >/dev/null || die "$peer: $b not found after install"
	done
}

install_alertmanager() {
	apt_install prometheus prometheus-alertmanager
	require_bins alertmanager prometheus promtool prometheus-alertmanager amtool
}

install_node_exporter() {
	apt_install prometheus-node-exporter
	require_bins node-exporter prometheus-node-exporter
}

install_postgres() {
	apt_install postgresql prometheus-postgres-exporter
	require_bins postgres prometheus-postgres-exporter
	# initdb, postgres and pgbench live in the versioned folder, not in PATH.
	compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || die "postgres: no /usr/lib/postgresql/*/bin/initdb after install"
}

install_rsyslog() {
	apt_install rsyslog
	if ! pkg_installed rsyslog-gnutls && apt_has rsyslog-gnutls; then
		apt_install rsyslog-gnutls
	fi
	require_bins rsyslog rsyslogd
}

install_logger() {
	# Debian ships logger in bsdutils (essential, from util-linux's source).
	if ! find_bin logger >/dev/null; then apt_install bsdutils; fi
	local logger
	logger=$(find_bin logger) || die "logger: not found after install"
	"$logger" --help 2>&1 | grep -q -- --octet-count || die "logger: $logger has no --octet-count (need util-linux >= 2.26)"
}

# syslog-ng conflicts with rsyslog as a Debian package, so its package is
# unpacked into the cache instead of installed; only its libraries are
# installed from apt (none of them conflict).
install_syslog_ng() {
	local link="$CACHE/syslog-ng"
	if [[ -f $link/$OK_MARKER ]]; then return 0; fi
	need_root "syslog-ng"
	apt_update_once
	local dl="$CACHE/downloads" tmp deb version dir
	mkdir -p "$dl"
	tmp=$(mktemp -d "$dl/syslog-ng.XXXXXX")
	(cd "$tmp" && run_quiet apt-get -q download syslog-ng-core) || die "syslog-ng: apt-get download syslog-ng-core failed"
	deb=$(compgen -G "$tmp/syslog-ng-core_*.deb" | head -n1) || true
	[[ -n $deb ]] || die "syslog-ng: no .deb after apt-get download"
	version=$(dpkg-deb -f "$deb" Version)
	# Install the libraries it depends on: first alternative of each
	# dependency, without version constraints.
	local deps=()
	mapfile -t deps < <(dpkg-deb -f "$deb" Depends | tr ',' '\n' |
		sed -e 's/|.*//' -e 's/(.*)//' -e 's/:any//' -e 's/[[:space:]]//g' | grep -v '^$')
	apt_install "${deps[@]}"
	dir="$CACHE/syslog-ng-$version"
	rm -rf "$dir"
	mkdir -p "$dir"
	run_quiet dpkg-deb -x "$deb" "$dir" || die "syslog-ng: dpkg-deb -x failed"
	mv "$deb" "$dl/" && rmdir "$tmp"

	# Layout (Debian 12): usr/sbin/syslog-ng, its libraries in usr/lib/syslog-ng
	# and its modules in usr/lib/syslog-ng/<major.minor>.
	local bin="$dir/usr/sbin/syslog-ng" modpath cfgver
	local ldpath="$dir/usr/lib/syslog-ng:$dir/usr/lib/x86_64-linux-gnu"
	modpath=$(compgen -G "$dir/usr/lib/syslog-ng/[0-9]*" | head -n1 || true)
	[[ -x $bin && -n $modpath && -f $modpath/libafsocket.so ]] || die "syslog-ng: unexpected package layout in $dir"
	cfgver=${modpath##*/}
	# Prove it runs and can parse a config that uses the drivers tests need.
	local conf="$dir/leitstand-check.conf"
	cat >"$conf" <<EOF
@version: $cfgver
source s_net { network(transport("udp") ip("127.0.0.1") port(65000)); syslog(transport("tcp") ip("127.0.0.1") port(65001)); };
destination d_file { file("/dev/null"); };
destination d_net { syslog("127.0.0.1" transport("tcp") port(65002)); };
log { source(s_net); destination(d_file); destination(d_net); };
EOF
	run_quiet env LD_LIBRARY_PATH="$ldpath" "$bin" --module-path="$modpath" --syntax-only -f "$conf" ||
		die "syslog-ng: unpacked binary does not run or rejects a basic config"
	rm -f "$conf"
	touch "$dir/$OK_MARKER"
	ln -sfn "syslog-ng-$version" "$link"
}

# es_user_reaches tells whether $ES_USER can read the unpacked Elasticsearch.
es_user_reaches() {
	runuser -u "$ES_USER" -- test -r "$1/lib" -a -x "$1/bin/elasticsearch"
}

# grant_traverse lets $ES_USER traverse every folder above $1 that it cannot
# yet (the default cache is under /root, mode 0700). With ACLs only that
# user gains access; without them, "others" get search (not read) permission.
grant_traverse() {
	local d=$1 dirs=()
	while [[ $d != / ]]; do
		dirs=("$d" "${dirs[@]}")
		d=$(dirname "$d")
	done
	apt_install acl
	for d in "${dirs[@]}"; do
		runuser -u "$ES_USER" -- test -x "$d" && continue
		setfacl -m "u:$ES_USER:x" "$d" 2>/dev/null || chmod o+x "$d"
	done
}

install_elasticsearch() {
	local link="$CACHE/elasticsearch"
	if [[ -f $link/$OK_MARKER ]] && id -u "$ES_USER" >/dev/null 2>&1 && es_user_reaches "$link/"; then
		return 0
	fi
	need_root "elasticsearch"
	find_bin unzip >/dev/null || apt_install unzip
	find_bin mvn >/dev/null || apt_install maven
	find_bin java >/dev/null || apt_install openjdk-17-jre-headless
	# Elasticsearch refuses to run as root.
	if ! id -u "$ES_USER" >/dev/null 2>&1; then
		run_quiet useradd --system --no-create-home --home-dir /nonexistent \
			--shell /usr/sbin/nologin "$ES_USER" || die "elasticsearch: useradd $ES_USER failed"
	fi

	local dl="$CACHE/downloads" v zip="" version=""
	mkdir -p "$dl"
	for v in $ES_VERSIONS; do
		if [[ -f $dl/elasticsearch-$v.zip ]]; then
			zip=$dl/elasticsearch-$v.zip version=$v
			break
		fi
	done
	if [[ -z $zip ]]; then
		local log="$dl/mvn.log" first_log="$dl/mvn-first.log"
		rm -f "$first_log"
		for v in $ES_VERSIONS; do
			# The integ-test distribution: plain HTTP, no security, no x-pack.
			if mvn -q -B -U -Dstyle.color=never dependency:copy \
				-Dartifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$v:zip" \
				-DoutputDirectory="$dl" >"$log" 2>&1 && [[ -f $dl/elasticsearch-$v.zip ]]; then
				zip=$dl/elasticsearch-$v.zip version=$v
				break
			fi
			# Keep the first failure: it says why the preferred version failed
			# (network, Maven setup), which matters more than the fallbacks'.
			[[ -f $first_log ]] || cp "$log" "$first_log"
		done
		if [[ -z $zip ]]; then
			printf '%s: mvn said for %s:\n' "$PROG" "${ES_VERSIONS%% *}" >&2
			grep -m 3 -E 'ERROR' "$first_log" | sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^/    /' >&2 || tail -n 10 "$first_log" | sed 's/^/    /' >&2
			rm -f "$log" "$first_log"
			die "elasticsearch: Maven Central served none of the versions $ES_VERSIONS (org.elasticsearch.distribution.integ-test-zip:elasticsearch:VERSION:zip)"
		fi
		rm -f "$log" "$first_log"
	fi

	local dir="$CACHE/elasticsearch-$version" tmp
	if [[ ! -f $dir/$OK_MARKER ]]; then
		tmp=$(mktemp -d "$CACHE/.unzip.XXXXXX")
		# A zip that does not unpack is a broken download: drop it, so the
		# next run fetches it again instead of failing on it forever.
		run_quiet unzip -q "$zip" -d "$tmp" || { rm -rf "$tmp" "$zip"; die "elasticsearch: unzip $zip failed (removed it; run again)"; }
		[[ -x $tmp/elasticsearch-$version/bin/elasticsearch ]] || { rm -rf "$tmp"; die "elasticsearch: $zip has no elasticsearch-$version/bin/elasticsearch"; }
		rm -rf "$dir"
		mv "$tmp/elasticsearch-$version" "$dir"
		rmdir "$tmp"
		chown -R "$ES_USER:" "$dir"
		touch "$dir/$OK_MARKER"
	fi
	ln -sfn "elasticsearch-$version" "$link"
	es_user_reaches "$dir" || grant_traverse "$dir"
	es_user_reaches "$dir" || die "elasticsearch: user $ES_USER cannot read $dir"
}

install_peer() {
	case $1 in
	elasticsearch | es) install_elasticsearch ;;
	alertmanager | prometheus | promtool | amtool) install_alertmanager ;;
	node-exporter | node_exporter) install_node_exporter ;;
	postgres | postgresql | postgres-exporter) install_postgres ;;
	rsyslog) install_rsyslog ;;
	syslog-ng) install_syslog_ng ;;
	logger) install_logger ;;
	*) die "unknown peer '$1' (known: ${ALL_PEERS[*]} prometheus)" ;;
	esac
}

main() {
	local peers=("$@") p
	((${#peers[@]})) || peers=("${ALL_PEERS[@]}")
	mkdir -p "$CACHE"
	# Test packages run in parallel and may all find a peer missing at once:
	# one installer at a time (apt and the unpacking are not concurrent-safe).
	exec 9>"$CACHE/.install.lock"
	flock -w 1800 9 || die "timed out waiting for another install.sh ($CACHE/.install.lock)"
	for p in "${peers[@]}"; do install_peer "$p"; done
}

main "$@"
