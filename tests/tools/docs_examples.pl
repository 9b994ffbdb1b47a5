#!/usr/bin/perl
# docs_examples.pl -- cut the configuration examples out of Markdown, for
# t_docs_examples.sh to load and run.
#
#   docs_examples.pl OUTDIR FILE.md...
#
# An example is a fenced block whose language is "apache" (Apache
# configuration) or "libconfig" (a policy file).  HTML comments on the
# lines right above the fence say how to take it:
#
#   <!-- example: fragment -->       not meant to load on its own (a
#                                    syntax illustration): not loaded
#   <!-- example-before: TEXT -->    TEXT goes before the block, e.g. the
#                                    tiers a rule example names
#   <!-- example-after: TEXT -->     TEXT goes after it
#   <!-- expect: REQUEST => CODES --> what the example does to requests,
#                                    in order, with one counter state
#   <!-- expect-log: REGEX -->       Apache only: a line of the error
#                                    log matches REGEX after the requests
#
# Each example becomes OUTDIR/NNN/ with files lang, where (file:line),
# kind (load or fragment), body, expect (one line per expect) and log.
use strict;
use warnings FATAL => 'all';

my $out = shift @ARGV or die "usage: docs_examples.pl OUTDIR FILE.md...\n";
my $n = 0;

sub put {
    my ($path, $text) = @_;
    open(my $fh, '>', $path) or die "docs_examples: $path: $!\n";
    print $fh $text;
    close($fh);
}

for my $file (@ARGV) {
    open(my $fh, '<', $file) or die "docs_examples: $file: $!\n";
    my @l = <$fh>;
    close($fh);
    chomp(@l);
    for (my $i = 0; $i < @l; $i++) {
        next unless $l[$i] =~ /^```(\w*)\s*$/;
        my $lang = $1;
        my $start = $i;
        my @body;
        for ($i++; $i < @l && $l[$i] !~ /^```\s*$/; $i++) {
            push @body, $l[$i];
        }
        # A block without a language that looks like configuration is an
        # example the test would miss: reported, so it gets its language.
        if ($lang eq ''
            && grep { /^\s*[a-z_]+ = .*;/
                       || /^\s*(RateLimit2\w+\s|<Location|LoadModule\s)/ } @body) {
            $lang = 'untagged';
        }
        next unless $lang =~ /^(apache|libconfig|untagged)$/;
        # The one-line comments right above the fence.
        my ($kind, @before, @after, @expect, @log, @c) = ('load');
        for (my $j = $start - 1;
             $j >= 0 && $l[$j] =~ /^<!--\s*(.*?)\s*-->\s*$/; $j--) {
            unshift @c, $1;
        }
        for my $c (@c) {
            if ($c =~ /^example:\s*fragment\b/) {
                $kind = 'fragment';
            }
            elsif ($c =~ /^example-before:\s*(.*)$/s) {
                push @before, $1;
            }
            elsif ($c =~ /^example-after:\s*(.*)$/s) {
                push @after, $1;
            }
            elsif ($c =~ /^expect:\s*(.*)$/s) {
                push @expect, $1;
            }
            elsif ($c =~ /^expect-log:\s*(.*)$/s) {
                push @log, $1;
            }
            elsif ($c =~ /^(example|expect)/) {
                die "docs_examples: $file:" . ($start + 1)
                    . ": unknown marker <!-- $c -->\n";
            }
        }
        my $dir = sprintf("%s/%03d", $out, ++$n);
        mkdir($dir) or die "docs_examples: $dir: $!\n";
        put("$dir/lang", "$lang\n");
        put("$dir/where", "$file:" . ($start + 1) . "\n");
        put("$dir/kind", "$kind\n");
        put("$dir/body", join("\n", @before, @body, @after) . "\n");
        put("$dir/expect", join('', map { "$_\n" } @expect));
        put("$dir/log", join('', map { "$_\n" } @log));
    }
}
print "$n\n";
