#!/usr/bin/perl
# index.cgi: the module's page: a link to kavconsole (or the console in a frame).
use strict;
use warnings;
our (%config, %text, %access);
require './kav4mailservers-lib.pl';

&ui_print_header(undef, $text{'index_title'}, "", undef, 1, 1);
if (!$access{'open'}) {
    print "<p>", $text{'index_noopen'}, "</p>\n";
}
elsif (!&kavconsole_installed()) {
    print "<p>", &text('index_notinst', "<tt>" . &html_escape($config{'kavconsole'}) . "</tt>"), "</p>\n";
}
else {
    my $url = &console_url();
    print "<p>", $text{'index_intro'}, "</p>\n";
    print "<p>", &text('index_config', "<tt>" . &html_escape($config{'config_file'}) . "</tt>"), "</p>\n";
    print "<p>", $text{'index_enable'}, "</p>\n";
    print &ui_link($url, $text{'index_open'}, undef, "target=_blank rel=noopener"), "\n";
    if ($config{'embed'}) {
        print "<iframe src=\"", &html_escape($url), "\" style=\"width:100%;height:80vh;border:0\"></iframe>\n";
    }
}
&ui_print_footer("/", $text{'index'});
