#!/usr/bin/perl
# Scores messages with SpamAssassin offline (local tests only, no network,
# no Bayes, no auto-whitelist), in one process so the rules compile once.
# Prints one line per message: FILE <tab> SCORE <tab> RULE=SCORE,RULE=SCORE...
use strict;
use warnings;
use Mail::SpamAssassin;

my $sa = Mail::SpamAssassin->new({
    local_tests_only => 1,
    dont_copy_prefs  => 1,
    userprefs_filename => '/dev/null',
    post_config_text => "use_bayes 0\nuse_auto_whitelist 0\nskip_rbl_checks 1\n",
});
$sa->compile_now(0);
for my $file (@ARGV) {
    open(my $fh, '<', $file) or die "cannot open $file: $!";
    my $raw = do { local $/; <$fh> };
    close $fh;
    my $mail = $sa->parse($raw);
    my $status = $sa->check($mail);
    my @hits;
    for my $rule (split /,/, $status->get_names_of_tests_hit()) {
        next if $rule eq '';
        my $score = $status->{conf}->{scores}->{$rule} // 0;
        push @hits, "$rule=$score";
    }
    printf "%s\t%s\t%s\n", $file, $status->get_score(), join(',', @hits);
    $status->finish();
    $mail->finish();
}
