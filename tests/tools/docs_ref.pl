#!/usr/bin/perl
# docs_ref.pl -- lists, one item a line, of what the sources define and
# what the documentation describes, for t_docs_ref.sh to compare.  Read
# from the files each time: nothing here names a directive or a key.
#
#   docs_ref.pl directives FILE.c...       AP_INIT_*("Name", ...) entries
#   docs_ref.pl doc-directives FILE.md     first words, RateLimit2*, of the
#                                          table rows anywhere in FILE
#   docs_ref.pl key-arrays FILE.c...       "array key" for every
#                                          static const char *const
#                                          rl2_*_keys[] = { ... };
#   docs_ref.pl doc-keys FILE.md           "array key" for the tables
#                                          marked <!-- keys: array -->
#   docs_ref.pl man-tags PAGE              the .TP tags of a man page
#   docs_ref.pl getopt FILE.c              the option letters of getopt()
#   docs_ref.pl doc-options FILE.md HEAD   "-x" of table rows under HEAD
#   docs_ref.pl env-names FILE.c           "RATELIMIT2_*" string literals
#   docs_ref.pl doc-env FILE.md HEAD       RATELIMIT2_* of table rows under
#                                          HEAD
#   docs_ref.pl long-options FILE.c...     "-x" of getopt_long()'s option
#                                          string and "--name" of every
#                                          struct option table
#   docs_ref.pl commands FILE.c...         "name" of { "name", rl2_*_fn }
#                                          dispatch table entries (and
#                                          { "name", rl2_*_fn, FLAG })
#   docs_ref.pl doc-all-options FILE.md HEAD  every "-x" and "--name" in
#                                          the first cells under HEAD
#   docs_ref.pl doc-commands FILE.md HEAD  first words of the first cells
#                                          under HEAD
#   docs_ref.pl man-options PAGE SECTION   every "-x" and "--name" in the
#                                          .TP tags under .SH SECTION
#   docs_ref.pl man-commands PAGE SECTION  first words of the .TP tags
#                                          under .SH SECTION
use strict;
use warnings FATAL => 'all';

sub slurp {
    my ($f) = @_;
    open(my $fh, '<', $f) or die "docs_ref: $f: $!\n";
    local $/;
    my $t = <$fh>;
    close($fh);
    return $t;
}

# C source without comments, so that a commented-out entry is not seen.
sub c_source {
    my $t = slurp($_[0]);
    $t =~ s{/\*.*?\*/}{ }gs;
    $t =~ s{//[^\n]*}{}g;
    return $t;
}

# The lines of the section under heading $head (up to the next heading
# of the same or a higher level), or of the whole file when $head is
# undef; fenced code is left out.
sub section_lines {
    my ($file, $head) = @_;
    my ($level, $fence, @lines);
    $level = 0 unless defined $head;     # the whole file
    for my $l (split /\n/, slurp($file)) {
        $fence = !$fence if $l =~ /^```/;
        next if $fence;
        if ($l =~ /^(#+)\s+(.*?)\s*$/) {
            last if $level && length($1) <= $level;
            $level = length($1) if !defined $level && $2 eq $head;
            next;
        }
        push @lines, $l if defined $level;
    }
    die "docs_ref: no heading \"$head\" in $file\n" unless defined $level;
    return @lines;
}

# The table rows' first code spans in the section under heading $head,
# or in the whole file when $head is undef.
sub first_cells {
    return map { /^\|\s*`([^`]*)`/ ? $1 : () } section_lines(@_);
}

# The whole first cells of the table rows under heading $head, with
# every code span in them: "`-c FILE`, `--config FILE`".
sub whole_first_cells {
    return grep { !/^\s*-+\s*$/ }
           map { /^\|([^|]*)\|/ ? $1 : () } section_lines(@_);
}

# The .TP tags of a man page, font escapes removed; only those under
# .SH $section (any case) when it is given.
sub man_tags {
    my ($page, $section) = @_;
    my @l = split /\n/, slurp($page);
    my ($in, $found, @tags) = (!defined $section, 0);
    for my $i (0 .. $#l - 1) {
        if ($l[$i] =~ /^\.SH\s+"?(.*?)"?\s*$/) {
            $in = !defined $section || uc($1) eq uc($section);
            $found ||= $in;
            next;
        }
        next unless $in && $l[$i] eq '.TP';
        (my $t = $l[$i + 1]) =~ s/\\f[BIRP]//g;
        $t =~ s/\\-/-/g;
        $t =~ s/\\&//g;
        push @tags, $t;
    }
    die "docs_ref: no section \"$section\" in $page\n"
        if defined $section && !$found;
    return @tags;
}

# "-x" and "--name" words of a list of tags or cells.
sub option_words {
    return grep { /^(?:-\w|--\w[\w-]*)$/ }
           map { my $t = $_; $t =~ s/[`,\[\]=]/ /g; split ' ', $t } @_;
}

my $cmd = shift @ARGV // '';
my %seen;
my @out;
if ($cmd eq 'directives') {
    for my $f (@ARGV) {
        push @out, c_source($f) =~ /\bAP_INIT_\w+\s*\(\s*"([^"]+)"/g;
    }
}
elsif ($cmd eq 'doc-directives') {
    @out = map { (split ' ', $_)[0] } first_cells($ARGV[0], undef);
    @out = grep { /^RateLimit2/ } @out;
}
elsif ($cmd eq 'key-arrays') {
    for my $f (@ARGV) {
        my $t = c_source($f);
        while ($t =~ /\bstatic\s+const\s+char\s*\*\s*const\s+
                      (rl2_\w+_keys)\s*\[\s*\]\s*=\s*\{(.*?)\}\s*;/gsx) {
            my ($name, $body) = ($1, $2);
            push @out, map { "$name $_" } $body =~ /"([^"]+)"/g;
        }
    }
}
elsif ($cmd eq 'doc-keys') {
    my ($array, $in);
    for my $l (split /\n/, slurp($ARGV[0])) {
        if ($l =~ /^<!--\s*keys:\s*(\S+)\s*-->/) {
            ($array, $in) = ($1, 0);
            next;
        }
        next unless defined $array;
        if ($l =~ /^\|/) {
            $in = 1;
            push @out, "$array $1" if $l =~ /^\|\s*`([^`]+)`\s*\|/;
        }
        elsif ($in) {
            undef $array;
        }
        elsif ($l =~ /\S/) {
            die "docs_ref: <!-- keys: $array --> is not followed by a table\n";
        }
    }
}
elsif ($cmd eq 'man-tags') {
    @out = map { (split ' ', $_)[0] // '' } man_tags($ARGV[0]);
}
elsif ($cmd eq 'long-options') {
    for my $f (@ARGV) {
        my $t = c_source($f);
        while ($t =~ /\bgetopt_long\s*\([^,]+,[^,]+,\s*"([^"]*)"/g) {
            push @out, map { "-$_" } grep { $_ ne ':' } split //, $1;
        }
        while ($t =~ /\bstruct\s+option\s+\w+\s*\[\s*\]\s*=\s*\{(.*?)\}\s*;/gs) {
            push @out, map { "--$_" } $1 =~ /\{\s*"([^"]+)"\s*,/g;
        }
    }
}
elsif ($cmd eq 'commands') {
    for my $f (@ARGV) {
        push @out, c_source($f) =~ /\{\s*"([a-z][\w-]*)"\s*,\s*rl2_\w+\s*(?:,\s*\d+\s*)?\}/g;
    }
}
elsif ($cmd eq 'doc-all-options') {
    @out = option_words(whole_first_cells($ARGV[0], $ARGV[1]));
}
elsif ($cmd eq 'doc-commands') {
    @out = map { /`\s*([^`\s]+)/ ? $1 : () }
           whole_first_cells($ARGV[0], $ARGV[1]);
}
elsif ($cmd eq 'man-options') {
    @out = option_words(man_tags($ARGV[0], $ARGV[1]));
}
elsif ($cmd eq 'man-commands') {
    @out = map { (split ' ', $_)[0] // () } man_tags($ARGV[0], $ARGV[1]);
}
elsif ($cmd eq 'getopt') {
    my ($spec) = c_source($ARGV[0]) =~ /\bgetopt\s*\([^,]+,[^,]+,\s*"([^"]+)"/;
    die "docs_ref: no getopt() in $ARGV[0]\n" unless defined $spec;
    @out = map { "-$_" } grep { $_ ne ':' } split //, $spec;
}
elsif ($cmd eq 'doc-options') {
    @out = grep { /^-\w$/ } map { (split ' ', $_)[0] }
           first_cells($ARGV[0], $ARGV[1]);
}
elsif ($cmd eq 'env-names') {
    @out = c_source($ARGV[0]) =~ /"(RATELIMIT2_[A-Z0-9_]+)"/g;
}
elsif ($cmd eq 'doc-env') {
    @out = grep { /^RATELIMIT2_/ } first_cells($ARGV[0], $ARGV[1]);
}
else {
    die "usage: docs_ref.pl directives|doc-directives|key-arrays|doc-keys|"
        . "man-tags|getopt|doc-options|env-names|doc-env|long-options|"
        . "commands|doc-all-options|doc-commands|man-options|man-commands "
        . "ARGS\n";
}
print "$_\n" for sort grep { !$seen{$_}++ } @out;
