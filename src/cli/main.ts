console.log('warden');
