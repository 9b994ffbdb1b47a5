#!/usr/bin/perl
# make_mmdb.pl -- a small MaxMind DB file for the geo factor's tests,
# built here from lines "CIDR CC" (one network and its country a line;
# '#' starts a comment), never downloaded:
#
#   make_mmdb.pl OUT.mmdb <<'END'
#   192.0.2.0/24    DE
#   2001:db8::/32   FR
#   END
#
# The tree is an IPv6 one (record size 24) with the IPv4 space where
# libmaxminddb looks for it (::a.b.c.d, aliased under ::ffff:0:0/96);
# each network's data is { country => { iso_code => CC } }, as in
# GeoLite2-Country.  Reserved ranges (documentation addresses) are kept:
# the tests use them.
use strict;
use warnings;

use MaxMind::DB::Writer::Tree;

die "usage: $0 OUT.mmdb < lines\n" unless @ARGV == 1;
my $out = $ARGV[0];

my %types = (
    country  => 'map',
    iso_code => 'utf8_string',
);
my $tree = MaxMind::DB::Writer::Tree->new(
    ip_version               => 6,
    record_size              => 24,
    database_type            => 'RL2-Test-Country',
    languages                => ['en'],
    description              => { en => 'mod_ratelimit2 test countries' },
    map_key_type_callback    => sub { $types{ $_[0] } },
    alias_ipv6_to_ipv4       => 1,
    remove_reserved_networks => 0,
);

my $n = 0;
while ( my $line = <STDIN> ) {
    $line =~ s/#.*//;
    next if $line =~ /^\s*$/;
    my ( $net, $cc ) = $line =~ /^\s*(\S+)\s+(\S+)\s*$/
        or die "$0: line $.: want \"CIDR CC\"\n";
    $tree->insert_network( $net, { country => { iso_code => $cc } } );
    $n++;
}
die "$0: no network given\n" unless $n;

open my $fh, '>:raw', $out or die "$0: $out: $!\n";
$tree->write_tree($fh);
close $fh or die "$0: $out: $!\n";
